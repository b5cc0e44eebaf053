"""--resume is "resume or start": a run killed before its first checkpoint, or an empty run
directory, starts from step 0 and says so, so a preemptible job's restart command never changes
(R1)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tuneloop.cli import main
from tuneloop.rundir import read_metrics

KILLER = Path(__file__).with_name("killer.py")


def _train_rows(run: Path, *, after_restart: bool = False) -> dict[int, dict]:
    rows = read_metrics(run)
    if after_restart:
        rows = rows[max(i for i, r in enumerate(rows) if r["kind"] == "restart") + 1:]
    return {r["step"]: r for r in rows if r["kind"] == "train"}


def test_killed_before_the_first_save_then_resume_starts_over(make_config, tmp_path, capsys):
    """SIGKILL after step 1 (first save at 3): --resume starts at step 0, says so, completes,
    and logs the same losses as a fresh run; the killed attempt's rows are kept."""
    cfg = make_config(save={"interval": 3})
    fresh = tmp_path / "fresh"
    assert main(["train", str(cfg), "--output-dir", str(fresh), "--no-progress"]) == 0
    ref = _train_rows(fresh)

    run = tmp_path / "killed"
    proc = subprocess.run([sys.executable, str(KILLER), str(cfg), str(run), "--after-step", "1"],
                          check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())
    capsys.readouterr()

    assert main(["train", str(cfg), "--output-dir", str(run), "--resume", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "no complete checkpoint" in captured.err and "starting from step 0" in captured.err
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["steps"] == 6 and info["restarted"] is True
    assert info["resumed_from"] is None
    got = _train_rows(run, after_restart=True)
    assert sorted(got) == sorted(ref) == list(range(1, 7))
    for step in got:
        assert got[step]["loss"] == pytest.approx(ref[step]["loss"], abs=1e-6), step
    before = read_metrics(run)
    cut = next(i for i, r in enumerate(before) if r["kind"] == "restart")
    # the killed attempt's rows (its step-0 eval; it died before logging step 1) are kept
    assert [r["step"] for r in before[:cut] if r["kind"] == "eval"] == [0]
    assert (run / "model").is_dir()


@pytest.mark.parametrize("exists", [False, True])
def test_resume_into_an_empty_or_missing_dir_starts(make_config, tmp_path, capsys, exists):
    """--resume on an empty (or not yet created) run directory trains it from the start."""
    cfg = make_config(training={"max_steps": 2}, save={"interval": 5})
    run = tmp_path / "run"
    if exists:
        run.mkdir()
    assert main(["train", str(cfg), "--output-dir", str(run), "--resume", "--no-progress"]) == 0
    assert "starting from step 0" in capsys.readouterr().err
    assert json.loads((run / "run.json").read_text())["steps"] == 2


def test_a_completed_run_without_checkpoints_is_not_trained_again(make_config, tmp_path, capsys):
    """A finished run is never silently overwritten by a restart: --resume refuses it."""
    cfg = make_config(training={"max_steps": 1}, save={"interval": 5})
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--output-dir", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", str(cfg), "--output-dir", str(run), "--resume", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "already completed" in err and "no complete checkpoint" in err
