"""`tuneloop plan`: the memory model's terms against the same terms measured on a real model."""

from __future__ import annotations

import pytest
import torch
from tiny import make_tiny_model

from tuneloop.train.config import TrainConfig
from tuneloop.train.plan import estimate_memory, measure_components, shape_of


def _config(method: str, batch: int, length: int) -> TrainConfig:
    return TrainConfig.model_validate({
        "model": "tiny", "method": method, "data": {"train": ["x.jsonl"], "max_length": length},
        "training": {"batch_size": batch}, "lora": {"r": 8, "dropout": 0.0}})


@pytest.mark.parametrize(("method", "batch", "length"),
                         [("full", 4, 128), ("lora", 4, 128), ("full", 1, 512)])
def test_estimate_matches_a_measured_tiny_model(tiny_tokenizer, method, batch, length):
    """Parameters, gradients and AdamW state exactly; saved activations (+ the saved log-softmax)
    within 25% of what autograd really keeps, for full, LoRA and a long sequence."""
    torch.manual_seed(0)
    model = make_tiny_model(tiny_tokenizer)
    shape = shape_of(model.config)
    assert shape.params == sum(p.numel() for p in model.parameters())
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                 target_modules="all-linear"))
    ids = torch.randint(0, shape.vocab, (batch, length))
    measured = measure_components(model, {"input_ids": ids, "labels": ids})
    est = estimate_memory(shape, _config(method, batch, length), checkpointing=False,
                          chunk_tokens=None)
    assert (est.weights, est.grads, est.optimizer) == (
        measured["weights"], measured["grads"], measured["optimizer"])
    # of the logits term (logits, log-softmax, its gradient) autograd saves the log-softmax
    saved = est.activations + est.logits // 3
    assert 0.75 <= saved / measured["activations"] <= 1.25, (saved, measured)
    assert est.logits // 3 == measured["logits"]


def test_checkpointing_and_chunking_shrink_the_right_terms(tiny_tokenizer):
    """Checkpointing cuts activations (not weights); a chunked loss cuts only the logits term."""
    shape = shape_of(make_tiny_model(tiny_tokenizer).config)
    cfg = _config("full", 8, 256)
    off = estimate_memory(shape, cfg, checkpointing=False, chunk_tokens=None)
    on = estimate_memory(shape, cfg, checkpointing=True, chunk_tokens=None)
    chunked = estimate_memory(shape, cfg, checkpointing=False, chunk_tokens=64)
    assert on.activations < off.activations / 1.5 and on.weights == off.weights
    assert chunked.logits < off.logits and chunked.activations == off.activations


def test_plan_with_probe_on_the_tiny_model(make_config):
    """make_plan reads the model's shape from its directory, probes real steps, and advises."""
    from tuneloop.train.config import load_config
    from tuneloop.train.plan import format_plan, make_plan

    plan = make_plan(load_config(make_config()), probe_steps=3)
    assert plan.probe is not None and plan.probe.steps == 3
    assert plan.probe.seconds_per_step > 0 and plan.probe.steps_per_epoch >= 1
    assert plan.memory["checkpointing off"].runtime > 0
    text = format_plan(plan)
    assert "peak memory per process" in text and "min/epoch" in text and "advice:" in text


def test_plan_and_train_commands_print_the_estimate(make_config, tmp_path, capsys):
    """`tuneloop plan` prints the table (and JSON); `train` prints the same estimate first."""
    import json

    from tuneloop.cli import main

    cfg = make_config()
    assert main(["plan", str(cfg), "--probe-steps", "0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["memory"]["checkpointing off"]["total"] > data["memory"]["checkpointing on"][
        "weights"]
    assert main(["train", str(cfg), "--output-dir", str(tmp_path / "run"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.index("peak memory per process") < out.index("steps:")
    assert main(["plan", str(tmp_path / "missing.yaml")]) == 2


def test_plan_says_when_the_system_malloc_makes_its_estimate_a_lower_bound(make_config,
                                                                          monkeypatch):
    """With jemalloc (what `make` installs) RSS follows the live memory the plan counts; with the
    system malloc the plan says its estimate can be exceeded, and how to fix that."""
    from tuneloop import allocator
    from tuneloop.train.config import load_config
    from tuneloop.train.plan import make_plan

    cfg = load_config(make_config())
    assert allocator.find_jemalloc(), "libjemalloc2 missing: `make test` installs it"
    with_jemalloc = make_plan(cfg)
    assert with_jemalloc.allocator == "jemalloc"
    assert not any("jemalloc" in a for a in with_jemalloc.advice)
    monkeypatch.setenv(allocator.CHOICE_ENV, "system")
    system = make_plan(cfg)
    assert system.allocator == "system" and system.to_json()["allocator"] == "system"
    assert any("install libjemalloc2" in a for a in system.advice)
