"""Objectives plug into the one loop: a registered objective's extra metrics reach the logs
without loop changes; suites need an evaluator hook (train/ imports nothing from eval/)."""

from __future__ import annotations

import pytest

from tuneloop.errors import ConfigError
from tuneloop.rundir import read_metrics
from tuneloop.train import TrainHooks, load_config, train
from tuneloop.train.objectives import OBJECTIVES, LossOutput, Objective
from tuneloop.train.objectives.sft import SFTObjective


class _SFTWithExtras(SFTObjective):
    """SFT plus extra metrics, the way DPO adds reward margin/accuracy (sums over units)."""

    def loss(self, model, batch):
        import torch

        out = super().loss(model, batch)
        return LossOutput(out.loss_sum, {"loss_again": out.loss_sum.detach(),
                                         "one_per_unit": torch.tensor(float(batch.n_units))})

    def evaluate(self, model, examples, **kwargs):
        res = super().evaluate(model, examples, **kwargs)
        res.metrics["eval_extra"] = 1.5
        return res


def test_registered_objective_drives_the_loop(make_config, tmp_path, monkeypatch):
    """Extra loss metrics are logged as per-unit means over the window; eval metrics land in
    eval rows; the loop takes the objective from the registry (R27 normalisation by units)."""
    assert isinstance(SFTObjective(), Objective)
    monkeypatch.setitem(OBJECTIVES, "sft", lambda config: _SFTWithExtras())
    cfg = make_config(training={"max_steps": 4, "batch_size": 4, "gradient_accumulation": 2},
                      logging={"interval": 2, "report_to": [], "progress": False},
                      eval={"interval": 2}, save={"interval": 10})
    res = train(load_config(cfg), output_dir=tmp_path / "run", progress=False)
    rows = read_metrics(res.run_dir)
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [2, 4]
    for r in train_rows:
        assert r["loss_again"] == pytest.approx(r["loss"], rel=1e-9)
        assert r["one_per_unit"] == pytest.approx(1.0)
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 2, 4]
    assert all(r["eval_extra"] == 1.5 and r["perplexity"] > 1 for r in evals)


def test_suites_without_an_evaluator_are_refused_before_anything_is_written(make_config,
                                                                             tmp_path):
    """eval.suites with no evaluate_checkpoint hook: a ConfigError naming the fix, no run dir;
    with a hook, its scores are logged as suite rows at every save."""
    cfg = make_config(eval={"suites": [str(tmp_path / "s.yaml")]},
                      training={"max_steps": 2, "batch_size": 8}, save={"interval": 1})
    with pytest.raises(ConfigError, match="eval.suites"):
        train(load_config(cfg), output_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    calls = []

    def scores(model, tokenizer, renderer):
        calls.append(model.training)
        return {"s.yaml": 0.25}

    res = train(load_config(cfg), output_dir=tmp_path / "run", progress=False,
                hooks=TrainHooks(evaluate_checkpoint=scores))
    suite_rows = [r for r in read_metrics(res.run_dir) if r["kind"] == "suite"]
    assert [(r["step"], r["pass_rate"]) for r in suite_rows] == [(1, 0.25), (2, 0.25)]
    assert len(calls) == 2
