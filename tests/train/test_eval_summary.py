"""The end-of-run summary counts the step-0 baseline, says when the final model is worse than
the best, and warns when nothing was learned (the held-out loss did not move)."""

from __future__ import annotations

import json

from tuneloop.cli import main
from tuneloop.rundir import read_metrics


def test_a_learning_rate_too_small_to_learn_is_said(make_config, tmp_path, capsys):
    """lr 1e-12: eval loss identical before and after -> warning + nothing_learned in run.json."""
    cfg = make_config(training={"max_steps": 3, "learning_rate": 1e-12}, save={"interval": 100})
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--output-dir", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning: nothing was learned" in err
    info = json.loads((run / "run.json").read_text())
    assert info["nothing_learned"] is True and info["status"] == "completed"
    assert abs(info["final_eval_loss"] - info["baseline_eval_loss"]) <= 1e-7


def test_a_normal_run_learns_and_says_nothing(make_config, tmp_path, capsys):
    """lr 1e-3: the eval loss moves; no warning, nothing_learned false, best at a trained step."""
    cfg = make_config(save={"interval": 100})
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--output-dir", str(run), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "warning:" not in err and "best eval loss:" in out and "(step 6)" in out
    info = json.loads((run / "run.json").read_text())
    assert info["nothing_learned"] is False and info["best_eval_step"] == 6


def test_best_eval_counts_the_baseline_and_a_worse_final_is_said(make_config, tmp_path, capsys):
    """A blown-up run kept going (on_divergence: warn): the best is step 0's, and it says so."""
    cfg = make_config(training={"max_steps": 4, "learning_rate": 500.0, "on_divergence": "warn"},
                      save={"interval": 100})
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--output-dir", str(run), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    evals = [r["eval_loss"] for r in read_metrics(run) if r["kind"] == "eval"]
    assert evals[-1] > 3 * evals[0]
    assert f"best eval loss: {evals[0]:.4f} (step 0, before training)" in out
    assert (f"the final eval loss {evals[-1]:.4f} is worse than the best, {evals[0]:.4f} at the "
            "untrained model (step 0)") in err
    info = json.loads((run / "run.json").read_text())
    assert info["baseline_eval_loss"] == evals[0] and info["best_eval_loss"] == evals[-1]
