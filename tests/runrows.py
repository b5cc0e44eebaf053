"""Reading a run's metrics the way the resume tests compare runs."""

from __future__ import annotations

from pathlib import Path

from tuneloop.rundir import read_metrics


def train_rows_by_step(run_dir: Path, after_resume: bool = False) -> dict[int, dict]:
    """{step: train row} of RUN/metrics.jsonl; after_resume keeps only rows after the last resume."""
    rows = read_metrics(run_dir)
    if after_resume:
        idx = max(i for i, r in enumerate(rows) if r["kind"] == "resume")
        rows = rows[idx + 1:]
    return {r["step"]: r for r in rows if r["kind"] == "train"}
