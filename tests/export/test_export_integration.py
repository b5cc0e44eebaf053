"""Export on the real embedded model (SmolLM2-135M-Instruct): the GGUF round trip gives the same
greedy text as the HF model, for the model itself and for a LoRA run of it, and the Ollama
Modelfile reproduces its chat template (default system prompt included)."""

from __future__ import annotations

import json

import pytest
import torch

from tuneloop.cli import main

pytestmark = pytest.mark.integration

EMBEDDED = "smollm2-135m-instruct"
TWO_TURNS = [{"role": "user", "content": "Hi there"},
             {"role": "assistant", "content": "Hello! How can I help?"},
             {"role": "user", "content": "Name a fruit."}]


def _greedy_text(model, tokenizer, messages, n=16):
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                             eos_token_id=[stop], pad_token_id=0, top_k=None, top_p=None,
                             temperature=None)
    return tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


def _passed_checks(out):
    checks = json.loads((out / "export.json").read_text())["checks"]
    assert all(c["passed"] for c in checks), checks
    return {c["name"]: c for c in checks}


def test_embedded_model_ollama_export(tmp_path):
    """Embedded model → GGUF f16 + Modelfile: the command's checks pass (identical greedy text on
    its probes), a fresh prompt answers identically, and the Modelfile renders the chat template."""
    from test_export_ollama import render_go_template
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneloop.export.ollama import parse_modelfile
    from tuneloop.models import load_model

    out = tmp_path / "smol"
    assert main(["export", EMBEDDED, "--format", "ollama", "--out", str(out),
                 "--no-progress"]) == 0
    checks = _passed_checks(out)
    assert checks["gguf f16 round trip: identical greedy text"]["figures"]["greedy_identical"] == 3

    spec = parse_modelfile((out / "Modelfile").read_text())
    hf_model, hf_tok = load_model(EMBEDDED)
    assert spec["system"].startswith("You are a helpful AI assistant named SmolLM")
    assert spec["stops"] == ["<|im_end|>"]
    for convo in (TWO_TURNS, [{"role": "system", "content": "Be brief."}, *TWO_TURNS]):
        want = hf_tok.apply_chat_template(convo, add_generation_prompt=True, tokenize=False)
        assert render_go_template(spec["template"], convo, spec["system"]) == want

    g_model = AutoModelForCausalLM.from_pretrained(out, gguf_file="model-f16.gguf",
                                                   dtype=torch.float32).eval()
    g_tok = AutoTokenizer.from_pretrained(out, gguf_file="model-f16.gguf")
    msgs = [{"role": "user", "content": "Name three fruits."}]
    assert _greedy_text(g_model, g_tok, msgs) == _greedy_text(hf_model, hf_tok, msgs)


def test_embedded_lora_run_gguf_round_trip(tmp_path, make_run):
    """A LoRA run of the embedded model → GGUF f16: the merge check passes (≤ 1e-4) and the GGUF,
    read back by transformers, gave the same greedy text as the HF model on every probe — and
    that text is what the adapter model itself answers, recomputed here with plain peft."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneloop.export.gguf_check import MAX_NEW_TOKENS
    from tuneloop.export.source import PROBES
    from tuneloop.models import ensure_embedded_model

    run = make_run(tmp_path / "run", EMBEDDED, "lora", steps=2,
                   training={"max_steps": 2, "batch_size": 2, "learning_rate": 5e-3, "seed": 1})
    out = tmp_path / "gguf"
    assert main(["export", str(run), "--format", "gguf", "--out", str(out), "--no-progress"]) == 0
    checks = _passed_checks(out)
    assert checks["merged == adapter logits"]["figures"]["max_abs_logit_diff"] <= 1e-4
    round_trip = checks["gguf f16 round trip: identical greedy text"]["figures"]
    assert round_trip["greedy_identical"] == len(PROBES)
    assert all(a["hf"] == a["gguf"] for a in round_trip["answers"])

    base = AutoModelForCausalLM.from_pretrained(ensure_embedded_model()).eval()
    tok = AutoTokenizer.from_pretrained(run / "model")
    probe = tok(tok.apply_chat_template(PROBES[0], add_generation_prompt=True, tokenize=False),
                add_special_tokens=False).input_ids
    with torch.no_grad():
        before = base(input_ids=torch.tensor([probe])).logits
    adapter = PeftModel.from_pretrained(base, run / "model").eval()
    with torch.no_grad():
        assert (adapter(input_ids=torch.tensor([probe])).logits - before).abs().max() > 1e-3
    answers = [_greedy_text(adapter, tok, p, n=MAX_NEW_TOKENS) for p in PROBES]
    assert answers == [a["hf"] for a in round_trip["answers"]]
