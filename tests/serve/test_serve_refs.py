"""Serving a run directory (base + LoRA adapter): same text as infer.generate on that model."""

from __future__ import annotations

import openai
import pytest


@pytest.fixture
def one_thread():
    """The engine's worker thread competes with this process's spinning OpenMP pool otherwise."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def lora_run(tiny_model_dir, tmp_path):
    """RUN/model/ holding a non-trivial LoRA adapter on the tiny model + tuneloop_model.json."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneloop.models import save_model_metadata

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                     init_lora_weights=False)  # random B: the adapter changes the outputs
    peft_model = get_peft_model(base, cfg)
    model_dir = tmp_path / "run" / "model"
    peft_model.save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(model_dir)
    save_model_metadata(model_dir, base_model=str(tiny_model_dir), method="lora",
                        template="chat", format="chat")
    return tmp_path / "run"


def test_serving_lora_run_dir_matches_infer_generate(lora_run, tiny_model_dir, one_thread):
    from fakeserver import serve_app

    from tuneloop.data.render import Renderer
    from tuneloop.infer.generate import generate
    from tuneloop.models import load_model
    from tuneloop.serve.server import build_app

    msgs = [{"role": "user", "content": "Translate to French: good morning."}]
    app = build_app(str(lora_run), model_name="tuned")
    with serve_app(app, lifespan="on") as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
        served = client.chat.completions.create(model="tuned", messages=msgs, max_tokens=10,
                                                temperature=0).choices[0].message.content

    def direct(ref: str) -> str:
        model, tok = load_model(ref)
        return generate(model, tok, Renderer(tok, template="chat"), [msgs], max_new_tokens=10,
                        progress=False)[0].text

    assert served == direct(str(lora_run))  # serve and infer agree on template and decoding
    assert served != direct(str(tiny_model_dir))  # and the adapter is really applied
