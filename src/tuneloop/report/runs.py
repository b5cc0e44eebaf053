"""Read a run directory (config, fingerprint, metrics, run.json) into a RunData, defensively.

Run dirs come from runs in any state (running, crashed, old versions), so a missing or malformed
file becomes a warning shown in the report, never a traceback and never a silently dropped line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop import rundir
from tuneloop.errors import UsageError


@dataclass
class RunData:
    """Everything the report shows about one run directory."""

    path: Path
    name: str
    run_info: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] | None = None
    train: list[dict[str, Any]] = field(default_factory=list)
    eval: list[dict[str, Any]] = field(default_factory=list)
    suite: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    index_row: dict[str, Any] | None = None
    index_evals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_eval_loss(self) -> float | None:
        """run.json's best eval loss, else the lowest eval loss in the metrics."""
        value = self.run_info.get("best_eval_loss")
        if isinstance(value, (int, float)):
            return float(value)
        losses = [r["eval_loss"] for r in self.eval if _is_num(r.get("eval_loss"))]
        return min(losses) if losses else None

    @property
    def steps(self) -> int | None:
        """run.json's step count, else the last logged step."""
        value = self.run_info.get("steps")
        if isinstance(value, int):
            return value
        logged = [r["step"] for r in self.train + self.eval if isinstance(r.get("step"), int)]
        return max(logged) if logged else None


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_yaml(path: Path, warnings: list[str]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        warnings.append(f"{path}: unreadable YAML ({exc}); config not shown")
        return {}
    if not isinstance(data, dict):
        warnings.append(f"{path}: expected a mapping, got {type(data).__name__}")
        return {}
    return data


def load_run(path: str | Path) -> RunData:
    """Read one run directory; raise UsageError if it is not a run directory at all."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise UsageError(
            "run directory not found",
            where=str(run_dir),
            fix="pass a directory written by `tuneloop train` (see `tuneloop runs` for paths)",
        )
    run_files = rundir.RunDir(run_dir)
    if not run_files.is_run():
        raise UsageError(
            f"not a run directory (none of {', '.join(rundir.MARKERS)} found)",
            where=str(run_dir),
            fix="pass a directory written by `tuneloop train`; eval outputs go in --compare/--evals",
        )
    warnings: list[str] = []
    run = RunData(path=run_dir.resolve(), name=run_dir.resolve().name, warnings=warnings)
    run.run_info = rundir.read_run_info(run_files, warnings)
    run.name = str(run.run_info.get("name") or run.name)
    run.config = _read_yaml(run_files.config, warnings)
    run.fingerprint = rundir.read_fingerprint(run_files, warnings)
    metrics = run_files.metrics
    rows = rundir.read_metric_rows(run_files, warnings)
    if rows is not None:
        for row in rows:
            kind = row.get("kind")
            if kind == "train":
                run.train.append(row)
            elif kind == "eval":
                run.eval.append(row)
            elif kind == "suite":
                run.suite.append(row)
        _warn_non_finite(run, metrics)
    else:
        warnings.append(f"{metrics}: missing; no loss curves for this run")
    return run


def _warn_non_finite(run: RunData, metrics: Path) -> None:
    """NaN/inf losses are logged as strings (JSON has no NaN); surface them, never hide them (R8)."""
    for rows, key in ((run.train, "loss"), (run.eval, "eval_loss")):
        bad = [r for r in rows if isinstance(r.get(key), str)]
        if bad:
            steps = ", ".join(f"{r.get('step')}={r[key]}" for r in bad[:10])
            run.warnings.append(
                f"{metrics}: {len(bad)} non-finite {key} value(s), not plotted (step {steps})"
            )


def attach_index(runs: list[RunData], index_path: Path | None = None) -> None:
    """Join each run's index row and evaluations, if an index exists (never creates one)."""
    from tuneloop import index

    path = index_path or index.default_index_path()
    if not path.is_file():
        return
    db = index.open_index(path)
    try:
        by_dir = {row["run_dir"]: row for row in index.list_runs(index=db)}
        for run in runs:
            run.index_row = by_dir.get(str(run.path))
            run.index_evals = index.list_evals(run.path, index=db)
    finally:
        db.close()
