"""The run directory and final model (exact file sets, plain transformers/peft load), metrics,
NaN policy (R8), grad norm logging (R9), dropped examples (R13), early stopping."""

from __future__ import annotations

import json

import pytest
import torch

from tuneloop.errors import TrainingError
from tuneloop.rundir import read_metrics
from tuneloop.train import train
from tuneloop.train.config import load_config

RUN_FILES = {"config.yaml", "data", "metrics.jsonl", "tensorboard", "checkpoints", "model",
             "run.json"}
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_lora_run_dir_and_plain_peft_load(make_config, tmp_path, tiny_model_dir):
    """LoRA run: exact run/model file sets; plain transformers+peft give the trained logits."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = make_config(method="lora", lora={"r": 4, "alpha": 8, "dropout": 0.0},
                      logging={"interval": 2, "report_to": ["tensorboard"], "progress": False},
                      training={"max_steps": 4, "batch_size": 4, "learning_rate": 5e-3},
                      save={"interval": 4})
    res = train(load_config(cfg), output_dir=tmp_path / "run", progress=False)
    run = res.run_dir
    assert {p.name for p in run.iterdir()} == RUN_FILES
    assert {p.name for p in (run / "model").iterdir()} == TOKENIZER_FILES | {
        "adapter_config.json", "adapter_model.safetensors", "tuneloop_model.json"}
    meta = json.loads((run / "model" / "tuneloop_model.json").read_text())
    assert meta["base_model"] == str(tiny_model_dir) and meta["method"] == "lora"
    assert meta["template"] == "chat" and meta["format"] == "chat"
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))

    tok = AutoTokenizer.from_pretrained(run / "model")
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    ids = torch.tensor([tok.apply_chat_template([{"role": "user", "content": "Describe the sea"}],
                                                add_generation_prompt=True)["input_ids"]])
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                      run / "model").eval()
    # Rebuild the trained model from the checkpoint of the last step (independent path).
    ref = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                         LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                    target_modules="all-linear", task_type="CAUSAL_LM"))
    weights = load_file(str(run / "checkpoints" / "step-000004" / "model.safetensors"))
    missing = set(dict(ref.named_parameters())) & set(weights)
    assert missing == set(weights)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if n in weights:
                p.copy_(weights[n])
    ref.eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert not torch.allclose(_logits(base, ids), _logits(plain, ids), atol=1e-4)  # it learned
    torch.testing.assert_close(_logits(plain, ids), _logits(ref, ids), atol=1e-5, rtol=0)
    # the run directory itself is a model reference for every tuneloop command
    from tuneloop.models import load_model

    via_ref, _ = load_model(str(run))
    torch.testing.assert_close(_logits(via_ref, ids), _logits(ref, ids), atol=1e-5, rtol=0)


def test_full_run_metrics_and_plain_transformers_load(make_config, tmp_path):
    """Full run: weights load with plain transformers; metrics carry loss/lr/grad norm (R9),
    tokens/s, real-token share, eval loss + perplexity; the eval loss drops."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    cfg = make_config(training={"max_steps": 8, "batch_size": 8, "learning_rate": 3e-3},
                      eval={"interval": 4}, save={"interval": 8})
    res = train(load_config(cfg), output_dir=tmp_path / "run", progress=False)
    run = res.run_dir
    assert {p.name for p in (run / "model").iterdir()} == TOKENIZER_FILES | {
        "config.json", "generation_config.json", "model.safetensors", "tuneloop_model.json"}
    plain = AutoModelForCausalLM.from_pretrained(run / "model")
    ck = load_file(str(run / "checkpoints" / "step-000008" / "model.safetensors"))
    for name, p in plain.named_parameters():
        assert torch.equal(p, ck[name]), name

    rows = read_metrics(run)
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == list(range(1, 9))
    for r in train_rows:
        assert r["grad_norm"] > 0 and r["lr"] >= 0 and r["tokens_per_s"] > 0
        assert r["real_token_share"] == 1.0  # packed: no padding
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 4, 8]  # step 0 = the base model (baseline)
    assert evals[-1]["eval_loss"] < evals[1]["eval_loss"] < evals[0]["eval_loss"]
    assert evals[-1]["perplexity"] == pytest.approx(2.718281828 ** evals[-1]["eval_loss"])
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["steps"] == 8
    assert info["best_eval_loss"] == pytest.approx(res.best_eval_loss)
    fp = json.loads((run / "data" / "fingerprint.json").read_text())
    assert fp["files"][0]["sha256"] and fp["train_examples"] + fp["eval_examples"] == 48
    assert load_config(run / "config.yaml").training.max_steps == 8
    from tuneloop.index import list_runs

    row = next(r for r in list_runs() if r["run_dir"] == str(run))
    assert row["steps"] == 8 and row["status"] == "completed" and row["method"] == "full"


def test_nan_loss_stops_with_the_step_named(make_config, tmp_path):
    """R8: an absurd learning rate makes a later step's loss non-finite: TrainingError naming
    that step, status failed, no checkpoint from that step on, and the CLI exits non-zero."""
    import re

    from tuneloop.cli import main

    cfg = make_config(training={"max_steps": 5, "batch_size": 4, "learning_rate": 1e30,
                                "max_grad_norm": None},
                      save={"interval": 1}, data={"eval_fraction": 0.0})
    with pytest.raises(TrainingError, match=r"NaN/inf at step \d") as err:
        train(load_config(cfg), output_dir=tmp_path / "run", progress=False)
    bad = int(re.search(r"at step (\d+)", str(err.value)).group(1))
    assert 2 <= bad <= 5  # step 1 starts from finite weights
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert saved == [f"step-{s:06d}" for s in range(1, bad)][-5:]
    rows = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert [r["step"] for r in rows] == list(range(1, bad))  # nothing non-finite logged
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"
    assert not (tmp_path / "run" / "model").exists()
    from tuneloop.index import list_runs

    # The failed run is listed (it was recorded at start and updated on failure).
    row = next(r for r in list_runs() if r["run_dir"] == str((tmp_path / "run").resolve()))
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert row["status"] == "failed" and row["steps"] == run_json["steps"]
    assert main(["train", str(cfg), "--output-dir", str(tmp_path / "cli"), "--no-progress"]) == 1


def test_nan_policy_skip_counts_skipped_steps(make_config, tmp_path):
    """R8: nan_policy skip: bad steps are skipped and counted, never averaged into the loss."""
    cfg = make_config(training={"max_steps": 5, "batch_size": 4, "learning_rate": 1e30,
                                "max_grad_norm": None, "nan_policy": "skip"},
                      save={"interval": 5}, data={"eval_fraction": 0.0})
    res = train(load_config(cfg), output_dir=tmp_path / "run", progress=False)
    rows = read_metrics(res.run_dir)
    skipped = [r["step"] for r in rows if r["kind"] == "skipped"]
    assert skipped and res.skipped_steps == len(skipped) and res.steps == 5
    assert 1 not in skipped
    for r in rows:
        if r["kind"] == "train" and r["step"] in skipped:
            assert r["loss"] == "nan"  # a window of only skipped steps shows nan, not a number
        elif r["kind"] == "train":
            assert isinstance(r["loss"], float)
    assert [r for r in rows if r["kind"] == "train"][-1]["skipped_steps"] == len(skipped)


def test_dropped_examples_are_counted_and_all_dropped_fails(make_config, tmp_path, chat_data):
    """R13: rows whose answer cannot fit are dropped with a count in run.json; if none remain,
    TrainingError before training."""
    cfg = make_config(data={"max_length": 40, "eval_fraction": 0.0},
                      training={"max_steps": 1, "batch_size": 8}, save={"interval": 5})
    res = train(load_config(cfg), output_dir=tmp_path / "run", progress=False)
    dropped = json.loads((res.run_dir / "run.json").read_text())["dropped"]
    assert dropped.get("train.answer_cut_by_max_length", 0) > 0
    assert res.dropped == dropped
    cfg2 = make_config(name="c2.yaml", data={"max_length": 4, "eval_fraction": 0.0})
    with pytest.raises(TrainingError, match="no training example remains"):
        train(load_config(cfg2), output_dir=tmp_path / "run2", progress=False)


def test_early_stopping_on_eval_loss(make_config, tmp_path):
    """Patience 2 with no eval improvement (lr ~0): stops after the 3rd eval, status says so."""
    cfg = make_config(training={"max_steps": 10, "batch_size": 8, "learning_rate": 1e-12},
                      eval={"interval": 1, "early_stopping_patience": 2,
                            "early_stopping_min_delta": 0.01},
                      save={"interval": 50})
    res = train(load_config(cfg), output_dir=tmp_path / "run", progress=False)
    assert res.stopped_early and res.steps == 3
    assert json.loads((res.run_dir / "run.json").read_text())["status"] == "stopped_early"


def test_suite_gated_saves_and_continued_pretraining(make_config, tmp_path):
    """Suites run at every save (kind "suite" rows) and can pick the best checkpoint; text records
    train every token (continued pretraining) and the model is saved with format "text"."""
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: tiny\nmax_new_tokens: 4\ncases:\n"
                     "  - id: a\n    prompt: Describe the sea\n    checks:\n      - max-words: 50\n"
                     "  - id: b\n    prompt: List colours\n    checks:\n      - icontains: zzz\n")
    text = tmp_path / "text.jsonl"
    rows = [f'{{"text": "The office opens at nine on day {i} and the sea is wide and blue."}}'
            for i in range(12)]
    text.write_text("\n".join(rows) + "\n")
    cfg = make_config(data={"train": [str(text)], "format": "text", "eval_fraction": 0.0,
                            "max_length": 16},
                      training={"max_steps": 4, "batch_size": 4},
                      eval={"suites": [str(suite)], "best_metric": "suite"},
                      save={"interval": 2, "keep_last": 1})
    # the train command wires the suites (train/ imports nothing from eval/)
    from tuneloop.commands.train import train_with_suites

    res = train_with_suites(load_config(cfg), output_dir=tmp_path / "run", progress=False)
    suites = [r for r in read_metrics(res.run_dir) if r["kind"] == "suite"]
    assert [r["step"] for r in suites] == [2, 4]
    assert all(r["pass_rate"] == 0.5 for r in suites)  # a passes (<= 50 words), b never does
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["best_checkpoint"] == "step-000002"  # ties keep the first
    assert sorted(p.name for p in (res.run_dir / "checkpoints").iterdir()) == [
        "step-000002", "step-000004"]  # keep_last 1 + the best
    meta = json.loads((res.run_dir / "model" / "tuneloop_model.json").read_text())
    assert meta["format"] == "text"
    fp = json.loads((res.run_dir / "data" / "fingerprint.json").read_text())
    assert fp["train_examples"] > 12  # 16-token chunks: every long text split, none dropped


def test_tracker_names_are_checked(make_config, tmp_path):
    """report_to names an unknown or uninstalled tracker → ConfigError with the fix."""
    from tuneloop.errors import ConfigError

    cfg = make_config(logging={"report_to": ["tensorbored"]})
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbored'"):
        train(load_config(cfg), output_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU defaults")
def test_cpu_defaults_fp32_and_no_checkpointing(make_config, monkeypatch):
    """precision auto → fp32 on CPU; gradient checkpointing auto → off on CPU."""
    from tuneloop.errors import ConfigError
    from tuneloop.train import setup

    # A CPU without native bf16 (on one with it, auto is bf16: tests/train/test_bf16.py).
    monkeypatch.setattr(setup, "cpu_native_bf16", lambda: False)
    from tuneloop.train.setup import precision as _precision
    from tuneloop.train.setup import want_checkpointing as _want_checkpointing

    assert _precision("auto") == "no" and _precision("fp32") == "no"
    with pytest.raises(ConfigError, match="needs a GPU"):
        _precision("bf16")
    cfg = load_config(make_config())
    assert _want_checkpointing("auto", None, cfg) is False
    assert _want_checkpointing("on", None, cfg) is True


def test_failed_setup_leaves_no_empty_run_dir(make_config, tmp_path):
    """A model ref that cannot load fails cleanly and leaves no empty default run directory."""
    from tuneloop.errors import ModelError
    from tuneloop.workspace import runs_root

    cfg = make_config(model=str(tmp_path / "no-such-model"))
    with pytest.raises(ModelError):
        train(load_config(cfg), progress=False)
    assert not runs_root().exists() or list(runs_root().iterdir()) == []


def test_custom_jinja_template_is_kept_with_the_model(make_config, tmp_path):
    """A user .jinja template is saved as RUN/model/template.jinja, named in
    tuneloop_model.json, and becomes the saved tokenizer's chat template (docs/training.md)."""
    from transformers import AutoTokenizer

    src = ("{% for m in messages %}[{{ m['role'] }}]:{{ '\\n' + m['content'] }}"
           "{% if m['role'] == 'assistant' %}<|im_end|>{% endif %}{{ '\\n' }}{% endfor %}"
           "{% if add_generation_prompt %}[assistant]:{{ '\\n' }}{% endif %}")
    template = tmp_path / "mine.jinja"
    template.write_text(src, encoding="utf-8")
    cfg = make_config(data={"template": str(template), "eval_fraction": 0.0},
                      training={"max_steps": 1, "batch_size": 8}, save={"interval": 5})
    res = train(load_config(cfg), output_dir=tmp_path / "run", progress=False)
    model_dir = res.run_dir / "model"
    assert (model_dir / "template.jinja").read_text(encoding="utf-8") == src
    meta = json.loads((model_dir / "tuneloop_model.json").read_text())
    assert meta["template"] == "template.jinja"
    assert AutoTokenizer.from_pretrained(model_dir).chat_template == src
