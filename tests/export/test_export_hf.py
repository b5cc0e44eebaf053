"""`tuneloop export --format hf`: the LoRA merge is exact (merged == adapter logits within 1e-4,
checked by the command and again here with plain transformers + peft), the directory is an
ordinary self-describing HF model, and a failed check writes nothing."""

from __future__ import annotations

import json

import pytest
import torch

from tuneloop.cli import main

HF_FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "chat_template.jinja", "tuneloop_model.json", "export.json"}


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def _prompt_ids(tokenizer, content="Describe item 3."):
    text = tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                         add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False).input_ids


def test_lora_merge_equals_adapter_logits(lora_run, tiny_model_dir, tmp_path, capsys):
    """Merged weights give the adapter model's logits (≤ 1e-4) when loaded by plain transformers;
    the export differs from the base (the adapter was not dropped) and describes itself; its saved
    chat template is the training template (R15), weights are safetensors (R7)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    assert main(["export", str(lora_run), "--format", "hf", "--out", str(out),
                 "--no-progress"]) == 0
    assert "merged == adapter logits" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == HF_FILES
    assert not (out / "adapter_config.json").exists()

    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                        lora_run / "model").eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    for content in ("Describe item 3.", "What is the capital of France?"):
        ids = _prompt_ids(tok, content)
        torch.testing.assert_close(_logits(merged, ids), _logits(adapter, ids), atol=1e-4, rtol=0)
        assert (_logits(merged, ids) - _logits(base, ids)).abs().max() > 1e-3  # LoRA did something
    assert merged.dtype == torch.float32

    meta = json.loads((out / "tuneloop_model.json").read_text())
    assert meta["method"] == "full" and meta["base_model"] == str(tiny_model_dir)
    record = json.loads((out / "export.json").read_text())
    assert record["format"] == "hf" and record["source"] == str(lora_run.resolve())
    merge = next(c for c in record["checks"] if c["name"] == "merged == adapter logits")
    assert merge["passed"] and merge["figures"]["max_abs_logit_diff"] <= 1e-4


def test_exported_dir_is_a_model_reference(lora_run, tmp_path):
    """The export loads through tuneloop's resolver with the training template, same logits."""
    from tuneloop.models import load_model, model_template, resolve_model_ref

    out = tmp_path / "merged"
    assert main(["export", str(lora_run), "--format", "hf", "--out", str(out),
                 "--no-progress"]) == 0
    resolved = resolve_model_ref(str(out))
    assert resolved.adapter is None and resolved.weights == str(out.resolve())
    assert model_template(resolved) == "chat"
    exported, tok = load_model(resolved)
    run_model, _ = load_model(str(lora_run))
    ids = _prompt_ids(tok)
    torch.testing.assert_close(_logits(exported, ids), _logits(run_model, ids), atol=1e-4, rtol=0)


def test_full_run_exports_weights_as_is(full_run, tmp_path):
    """A full fine-tuned run: its weights, unchanged, plus the load check."""
    from safetensors.torch import load_file

    out = tmp_path / "full"
    assert main(["export", str(full_run), "--format", "hf", "--out", str(out),
                 "--no-progress"]) == 0
    mine, theirs = load_file(out / "model.safetensors"), load_file(
        full_run / "model" / "model.safetensors")
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key
    names = [c["name"] for c in json.loads((out / "export.json").read_text())["checks"]]
    assert names == ["hf reload: saved == loaded logits"]


def test_bad_merge_fails_clearly_and_writes_nothing(lora_run, tmp_path, monkeypatch, capsys):
    """If the merged weights drift from the adapter model (injected here), the command exits
    non-zero with the measured difference, and leaves no output directory behind."""
    from peft.tuners.tuners_utils import BaseTuner

    real = BaseTuner.merge_and_unload

    def drifting_merge(self, *args, **kwargs):
        model = real(self, *args, **kwargs)
        with torch.no_grad():
            model.model.norm.weight.mul_(1.01)
        return model

    monkeypatch.setattr(BaseTuner, "merge_and_unload", drifting_merge)
    out = tmp_path / "merged"
    assert main(["export", str(lora_run), "--format", "hf", "--out", str(out),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "export check failed: merged == adapter logits" in err and "max |Δlogit|" in err
    assert "Traceback" not in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary directory left either


@pytest.mark.parametrize("existing", ["file", "nonempty"])
def test_out_that_exists_is_refused(lora_run, tmp_path, capsys, existing):
    """--out must be new (or an empty directory): export never overwrites files."""
    out = tmp_path / "out"
    if existing == "file":
        out.write_text("keep me")
    else:
        out.mkdir()
        (out / "keep.txt").write_text("keep me")
    assert main(["export", str(lora_run), "--format", "hf", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "fix:" in err and "Traceback" not in err
    assert (out.read_text() if existing == "file" else (out / "keep.txt").read_text()) == "keep me"


def test_not_a_run_dir_and_unknown_format(tmp_path, capsys):
    """Not a model (an empty dir, a random file) or an unknown format: one clear message."""
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(empty), "--format", "hf", "--out", str(tmp_path / "o1")]) == 1
    err = capsys.readouterr().err
    assert "holds no model" in err and "fix:" in err and "Traceback" not in err
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert main(["export", str(notes), "--format", "gguf", "--out", str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err
    assert "not a model directory" in err and "Traceback" not in err
    assert main(["export", str(empty), "--format", "onnx", "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert "'onnx' is not one of" in err and "hf" in err
    assert not any((tmp_path / n).exists() for n in ("o1", "o2", "o3"))


def test_export_is_registered_with_help(capsys):
    """`tuneloop export --help` lists the formats and points at the checks it runs."""
    assert main(["export", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--format [hf|gguf|ollama]" in out and "--quant [f16|q8_0]" in out
    assert "merged into the fp32 base" in out
