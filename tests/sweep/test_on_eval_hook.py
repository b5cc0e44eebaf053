"""The loop's pruning seam: TrainHooks.on_eval sees every eval loss and can end the run."""

from __future__ import annotations

import json

from tuneloop.index import list_runs
from tuneloop.rundir import read_metrics
from tuneloop.train import TrainHooks, load_config, train


def test_on_eval_sees_every_eval_and_never_stops_a_run_that_says_no(sweep_config, tmp_path):
    """Called at step 0 (eval.at_start), at each eval.interval and at the end, with the logged
    loss; returning False leaves the run completed."""
    seen: list[tuple[int, float]] = []
    res = train(load_config(sweep_config()), output_dir=tmp_path / "run", progress=False,
                hooks=TrainHooks(on_eval=lambda step, loss: seen.append((step, loss)) or False))
    assert [s for s, _ in seen] == [0, 2, 4, 6]
    logged = [(r["step"], r["eval_loss"]) for r in read_metrics(res.run_dir) if r["kind"] == "eval"]
    assert logged == seen
    assert not res.pruned
    assert json.loads((res.run_dir / "run.json").read_text())["status"] == "completed"


def test_on_eval_true_ends_the_run_cleanly_as_pruned(sweep_config, tmp_path):
    """True at step 2 of 6: no further step, a `pruned` metrics row, the model saved, and
    run.json and the index both say pruned."""
    res = train(load_config(sweep_config()), output_dir=tmp_path / "run", progress=False,
                hooks=TrainHooks(on_eval=lambda step, loss: step >= 2))
    assert res.pruned and res.steps == 2
    rows = read_metrics(res.run_dir)
    assert max(r["step"] for r in rows) == 2
    assert [r["step"] for r in rows if r["kind"] == "pruned"] == [2]
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["status"] == "pruned" and info["steps"] == 2
    assert (res.run_dir / "model" / "tuneloop_model.json").is_file()
    [row] = [r for r in list_runs() if r["run_dir"] == str(res.run_dir)]
    assert row["status"] == "pruned" and row["steps"] == 2


def test_true_after_the_last_step_leaves_the_run_completed(sweep_config, tmp_path):
    """The final eval comes after the last step: nothing is left to stop, so a True there
    does not turn a finished run into a pruned one."""
    seen: list[int] = []
    cfg = sweep_config(eval={"interval": None, "at_start": False})
    res = train(load_config(cfg), output_dir=tmp_path / "run", progress=False,
                hooks=TrainHooks(on_eval=lambda step, loss: seen.append(step) or True))
    assert seen == [6] and res.steps == 6 and not res.pruned
    assert json.loads((res.run_dir / "run.json").read_text())["status"] == "completed"
    assert not [r for r in read_metrics(res.run_dir) if r["kind"] == "pruned"]
