"""The divergence guard: unit rules on loss sequences, and a huge learning rate through the CLI
(status diverged, exit 1, no model) or, with on_divergence: warn, a loud warning and a finished
run (R8)."""

from __future__ import annotations

import json
import math

import pytest

from tuneloop.cli import main
from tuneloop.rundir import read_metrics
from tuneloop.train.guard import DivergenceGuard

LN_V = math.log(49152)  # SmolLM2's vocabulary: the issue's 10.8027


def _feed(guard: DivergenceGuard, losses, grads=None):
    grads = grads or [1.0] * len(losses)
    for step, (loss, grad) in enumerate(zip(losses, grads, strict=True), start=1):
        found = guard.observe_train(step, loss, grad)
        if found:
            return found
    return None


def test_uniform_level_after_a_low_start_is_divergence():
    """From 4.0 (3x would be 12) to ln(V) for three logged steps -> uniform, at the third; the
    issue's run (2.61 -> 10.80) is already more than 3x its start at its first such step."""
    found = _feed(DivergenceGuard(uniform_loss=LN_V), [4.0, 10.8027, 10.8027, 10.8027, 10.8])
    assert found is not None and found.kind == "uniform" and found.step == 4
    assert "10.8027" in found.reason and "4.0000" in found.reason
    found = _feed(DivergenceGuard(uniform_loss=LN_V), [2.61, 10.8027, 10.8027, 10.8027])
    assert found is not None and (found.kind, found.step) == ("rising", 2)


def test_uniform_level_needs_several_steps_and_a_low_start():
    """One step near ln(V) is not enough; a random-init model that starts at ln(V) is fine."""
    assert _feed(DivergenceGuard(uniform_loss=LN_V), [4.0, 10.4, 4.0, 10.4, 4.0]) is None
    assert _feed(DivergenceGuard(uniform_loss=LN_V), [10.8, 10.79, 10.78, 10.8, 10.7]) is None
    assert _feed(DivergenceGuard(uniform_loss=None), [4.0, 10.8, 10.8, 10.8]) is None


def test_loss_far_above_its_start_is_divergence():
    """More than 3x the first loss (and 1 nat above it) -> rising, at that step."""
    found = _feed(DivergenceGuard(), [2.0, 2.5, 6.5])
    assert found is not None and (found.kind, found.step) == ("rising", 3)
    # a well-fit model starting near 0 may triple by noise: not a blow-up
    assert _feed(DivergenceGuard(), [0.05, 0.2, 0.4, 0.3]) is None


def test_zero_gradient_for_several_steps_is_divergence():
    """grad norm exactly 0 three logged steps in a row -> zero_grad; an isolated 0 is not."""
    found = _feed(DivergenceGuard(), [3.0, 3.0, 3.0, 3.0], grads=[1.0, 0.0, 0.0, 0.0])
    assert found is not None and (found.kind, found.step) == ("zero_grad", 4)
    assert _feed(DivergenceGuard(), [3.0] * 5, grads=[0.0, 0.0, 1e-9, 0.0, 0.0]) is None


def test_a_healthy_run_and_nan_are_not_divergence():
    """A decreasing loss never fires; NaN/inf are nan_policy's, not the guard's."""
    assert _feed(DivergenceGuard(uniform_loss=LN_V), [2.6, 2.4, 2.3, 2.1, 2.2, 2.0]) is None
    assert _feed(DivergenceGuard(uniform_loss=LN_V), [2.6, math.nan, math.inf, 2.5]) is None


def test_eval_loss_at_uniform_level_after_the_baseline():
    """The issue's eval: 2.607 at step 0, 10.803 at step 8 -> uniform at step 8."""
    guard = DivergenceGuard(uniform_loss=LN_V)
    assert guard.observe_eval(0, 2.607) is None
    found = guard.observe_eval(8, 10.803)
    assert found is not None and (found.kind, found.step) == ("uniform", 8)


def test_huge_learning_rate_ends_diverged_through_the_cli(make_config, tmp_path, capsys):
    """lr 500 on the tiny model: exit 1, the step, the reason and the LR fix, no traceback;
    run.json and the index say diverged; no model/ is written."""
    cfg = make_config(training={"max_steps": 8, "learning_rate": 500.0},
                      save={"interval": 100})
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--output-dir", str(run), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    losses = [r["loss"] for r in read_metrics(run) if r["kind"] == "train"]
    # the first step whose loss is over 3x the first is where it stops, and the last logged
    bad = next(i for i, x in enumerate(losses, start=1) if x > 3 * losses[0])
    assert bad == len(losses) and bad >= 2
    assert f"training diverged at step {bad}" in err and "lower training.learning_rate" in err
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "diverged" and f"at step {bad}" in info["error"]
    assert not (run / "model").exists()
    from tuneloop.index import list_runs

    row = next(r for r in list_runs() if r["run_dir"] == str(run.resolve()))
    assert row["status"] == "diverged"
    rows = [r for r in read_metrics(run) if r["kind"] == "divergence"]
    assert [(r["step"], r["signal"], r["action"]) for r in rows] == [(bad, "rising", "stop")]


def test_on_divergence_warn_goes_on_loudly(make_config, tmp_path, capsys):
    """on_divergence: warn: the same run warns once, finishes (exit 0) and keeps the warning."""
    cfg = make_config(training={"max_steps": 4, "learning_rate": 500.0,
                                "on_divergence": "warn"}, save={"interval": 100})
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--output-dir", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("WARNING: training looks diverged at step") == 1
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["steps"] == 4
    assert [w["signal"] for w in info["divergence_warnings"]] == ["rising"]
    assert (run / "model").is_dir()


@pytest.mark.parametrize("value", ["stop", "warn"])
def test_on_divergence_does_not_change_the_config_fingerprint(make_config, value):
    """A run may be resumed with the other setting (it does not change how it trains)."""
    from tuneloop.train.config import config_fingerprint, load_config

    base = load_config(make_config())
    other = load_config(make_config(training={"on_divergence": value}))
    assert config_fingerprint(base) == config_fingerprint(other)
