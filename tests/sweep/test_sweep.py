"""`tuneloop sweep` on the tiny model: determinism, pruning, failures, best.yaml, the records."""

from __future__ import annotations

import json

import pytest

from tuneloop.errors import TrainingError
from tuneloop.index import list_runs, list_trials
from tuneloop.sweep import SweepOptions, run_sweep
from tuneloop.train.config import load_config

GOOD_LR, BAD_LR = 3e-3, 1e-9  # 1e-9 leaves the model as it was: clearly worse eval loss


def _params(result) -> list[dict]:
    return [t.params for t in result.trials]


def test_same_seed_samples_the_same_trials(sweep_config, tmp_path):
    """Two sweeps with seed 7 sample the same values, including trial 2, which TPE picks from
    the first two trials' losses (startup_trials=2); seed 8 samples others."""
    cfg = sweep_config(training={"max_steps": 2})
    specs = ["training.learning_rate=log:1e-5..1e-2", "training.warmup_steps=int:0..2",
             "training.scheduler=linear,cosine,constant"]
    opts = SweepOptions(trials=3, seed=7, startup_trials=2, prune=False)
    first = run_sweep(cfg, specs, metric="eval_loss", options=opts, out=tmp_path / "a")
    again = run_sweep(cfg, specs, metric="eval_loss", options=opts, out=tmp_path / "b")
    assert _params(first) == _params(again)
    assert [t.value for t in first.trials] == [t.value for t in again.trials]
    assert len({json.dumps(p, sort_keys=True) for p in _params(first)}) == 3
    other = run_sweep(cfg, specs, metric="eval_loss", out=tmp_path / "c",
                      options=SweepOptions(trials=1, seed=8, startup_trials=2, prune=False))
    assert _params(other)[0] != _params(first)[0]


def test_a_clearly_worse_trial_is_pruned_and_recorded_so(sweep_config, tmp_path):
    """Seed 0 samples lr bad, good, bad. With one completed trial needed before pruning, trial 2
    (bad again) is worse than the median of trials 0 and 1 at its first eval (step 2): it stops
    there, and the index (sweep row and run row), run.json and sweep.json say pruned."""
    cfg = sweep_config()
    out = tmp_path / "sweep"
    res = run_sweep(cfg, [f"training.learning_rate={GOOD_LR},{BAD_LR}"], metric="eval_loss",
                    out=out, options=SweepOptions(trials=3, seed=0, prune_startup_trials=1))
    assert [t.params["training.learning_rate"] for t in res.trials] == [BAD_LR, GOOD_LR, BAD_LR]
    assert [t.state for t in res.trials] == ["complete", "complete", "pruned"]
    rows = list_trials(out)
    assert [(r["trial"], r["state"], r["steps"]) for r in rows] == [
        (0, "complete", 6), (1, "complete", 6), (2, "pruned", 2)]
    assert rows[2]["value"] is None and rows[2]["extra"]["pruned_at_step"] == 2
    assert rows[1]["value"] == pytest.approx(res.trials[1].best_eval_loss)
    assert rows[0]["run_dir"] == str(out / "trial-000")
    runs = {r["run_dir"]: r for r in list_runs()}
    assert runs[str(out / "trial-002")]["status"] == "pruned"
    assert runs[str(out / "trial-001")]["status"] == "completed"
    assert json.loads((out / "trial-002" / "run.json").read_text())["status"] == "pruned"
    saved = json.loads((out / "sweep.json").read_text())
    assert [t["state"] for t in saved["trials"]] == ["complete", "complete", "pruned"]
    assert saved["best"] == 1 and saved["direction"] == "minimize"

    # best.yaml: the full config with the best trial's value, loadable as `tuneloop train` does,
    # and the same config the best trial trained with (its name aside).
    assert res.best.number == 1 and res.best.value < res.trials[0].value
    best = load_config(out / "best.yaml")
    assert best.training.learning_rate == GOOD_LR
    trained = load_config(out / "trial-001" / "config.yaml")
    assert best.model_dump(exclude={"name"}) == trained.model_dump(exclude={"name"})
    assert best.name == "s" and trained.name == "s-trial-001"


def test_a_failing_trial_is_recorded_failed_and_the_sweep_goes_on(sweep_config, tmp_path):
    """lr 1e8 makes the loss NaN: that trial is failed (with the reason) in the index and
    sweep.json, the other completes and is the best."""
    out = tmp_path / "sweep"
    res = run_sweep(sweep_config(), ["training.learning_rate=1e-3,1e8"], metric="eval_loss",
                    out=out, options=SweepOptions(trials=2, seed=0, prune=False))
    by_lr = {t.params["training.learning_rate"]: t for t in res.trials}
    assert set(by_lr) == {1e-3, 1e8}
    assert by_lr[1e8].state == "failed" and "NaN" in by_lr[1e8].error
    assert by_lr[1e-3].state == "complete" and res.best is by_lr[1e-3]
    states = {r["params"]["training.learning_rate"]: (r["state"], r["extra"]["error"])
              for r in list_trials(out)}
    assert states[1e8][0] == "failed" and "NaN" in states[1e8][1]
    assert states[1e-3] == ("complete", None)


def test_no_completed_trial_is_an_error_after_everything_is_written(sweep_config, tmp_path):
    """Every trial failing raises TrainingError naming the first error; sweep.json, the index
    rows and report.html are written first, and there is no best.yaml."""
    out = tmp_path / "sweep"
    with pytest.raises(TrainingError) as info:
        run_sweep(sweep_config(), ["training.learning_rate=1e8,1e9"], metric="eval_loss",
                  out=out, options=SweepOptions(trials=1, prune=False))
    assert "no trial completed (0 pruned, 1 failed; first error:" in info.value.what
    assert [t["state"] for t in json.loads((out / "sweep.json").read_text())["trials"]] == [
        "failed"]
    assert [r["state"] for r in list_trials(out)] == ["failed"]
    assert "Sweep trials" in (out / "report.html").read_text()
    assert not (out / "best.yaml").exists()
