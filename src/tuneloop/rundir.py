"""The one owner of the run directory's layout: file names, atomic writes, run.json, metrics.jsonl.

    RUN/config.yaml              the resolved training config
    RUN/data/fingerprint.json    data fingerprint (files, rendered hashes, drops)
    RUN/metrics.jsonl            one JSON event per line: {"step", "kind", ...}
    RUN/tensorboard/             tracker files (written by Accelerate)
    RUN/checkpoints/step-N/      complete checkpoints (format: tuneloop.train.checkpoint)
    RUN/model/                   the final model
    RUN/evals/                   evaluation outputs of commands run on this run
    RUN/run.json                 status, steps, best checkpoint, losses, drops, timings

The trainer writes through this module, and the report, the index and the commands read through
it, so a file name or format changes in one place. It sits low in the layers (stdlib and
tuneloop.errors only) so any of them may use it. Writers that a reader can race with are atomic
(temp file + fsync + rename); only a training's main process writes (R27).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.yaml"
FINGERPRINT_FILE = "data/fingerprint.json"
METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"
MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
EVALS_DIR = "evals"
# Any of these marks a directory as a run directory (a run in any state writes at least one).
MARKERS = (RUN_FILE, CONFIG_FILE, METRICS_FILE)


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (nothing is created or read by building one)."""

    path: Path

    @property
    def config(self) -> Path:
        """RUN/config.yaml."""
        return self.path / CONFIG_FILE

    @property
    def fingerprint(self) -> Path:
        """RUN/data/fingerprint.json."""
        return self.path / FINGERPRINT_FILE

    @property
    def metrics(self) -> Path:
        """RUN/metrics.jsonl."""
        return self.path / METRICS_FILE

    @property
    def run_info(self) -> Path:
        """RUN/run.json."""
        return self.path / RUN_FILE

    @property
    def model(self) -> Path:
        """RUN/model (the final model)."""
        return self.path / MODEL_DIR

    @property
    def checkpoints(self) -> Path:
        """RUN/checkpoints."""
        return self.path / CHECKPOINTS_DIR

    @property
    def evals(self) -> Path:
        """RUN/evals."""
        return self.path / EVALS_DIR

    def is_run(self) -> bool:
        """True if any marker file of a run directory exists."""
        return any((self.path / marker).exists() for marker in MARKERS)

    def has_started(self) -> bool:
        """True if a training run was started here (run.json or a checkpoint exists)."""
        return self.run_info.is_file() or self.checkpoints.is_dir()


# ------------------------------------------------------------------------------------- writing


def write_atomic(path: Path, text: str) -> None:
    """Write text to path via a temp file + fsync + rename (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Atomic pretty JSON."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_run_info(run: RunDir, info: dict[str, Any]) -> None:
    """Replace RUN/run.json atomically."""
    write_json(run.run_info, info)


def write_config(run: RunDir, yaml_text: str) -> None:
    """Write RUN/config.yaml (the resolved config, as YAML text)."""
    write_atomic(run.config, yaml_text)


def write_fingerprint(run: RunDir, fingerprint: dict[str, Any]) -> None:
    """Write RUN/data/fingerprint.json."""
    write_json(run.fingerprint, fingerprint)


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf: keep them visible as strings rather than averaging them away (R8)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def metric_row(kind: str, step: int, **values: Any) -> dict[str, Any]:
    """The metrics.jsonl row of one event (non-finite floats become "nan"/"inf" strings)."""
    return {"step": step, "kind": kind, **{k: _clean(v) for k, v in values.items()}}


def append_metric(run: RunDir, kind: str, step: int, **values: Any) -> None:
    """Append one event {"step", "kind", ...} to RUN/metrics.jsonl."""
    with open(run.metrics, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(metric_row(kind, step, **values)) + "\n")
        fh.flush()


class Metrics:
    """Appends events to metrics.jsonl and forwards their numbers to experiment trackers.

    `trackers` is anything with a `trackers` list and `log(values, step=)` (an accelerate
    Accelerator); numbers go there as `kind/key`. With enabled=False (not the main process)
    nothing is written.
    """

    def __init__(self, run_dir: Path | RunDir, trackers: Any = None, *, enabled: bool = True):
        self.run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
        self.path = self.run.metrics
        self.trackers = trackers
        self.enabled = enabled

    def log(self, kind: str, step: int, **values: Any) -> None:
        """One event to metrics.jsonl and to the trackers."""
        if not self.enabled:
            return
        append_metric(self.run, kind, step, **values)
        numbers = {
            f"{kind}/{k}": v for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if numbers and self.trackers is not None and self.trackers.trackers:
            self.trackers.log(numbers, step=step)


# ------------------------------------------------------------------------------------- reading


def read_metrics(run_dir: Path | RunDir) -> list[dict[str, Any]]:
    """All events of a run's metrics.jsonl, in order (strict: for runs this code wrote)."""
    path = (run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))).metrics
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def read_json_lenient(path: Path, warnings: list[str]) -> Any:
    """Parse a JSON file; a missing file gives None, a broken one a warning and None.

    For readers of directories written by runs in any state (running, crashed, older versions):
    a bad file becomes a warning to show, never a traceback.
    """
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.append(f"{path}: unreadable JSON ({exc}); not shown")
        return None


def read_jsonl_lenient(path: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """Parse a JSONL file row by row; each bad line is counted in one warning naming its lines."""
    rows: list[dict[str, Any]] = []
    bad: list[int] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        warnings.append(f"{path}: unreadable ({exc}); not shown")
        return rows
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad.append(lineno)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(lineno)
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (" …" if len(bad) > 10 else "")
        warnings.append(f"{path}: {len(bad)} line(s) not a JSON object, skipped (lines {shown})")
    return rows


def read_run_info(run: RunDir, warnings: list[str]) -> dict[str, Any]:
    """RUN/run.json as a dict ({} when missing or broken; broken adds a warning)."""
    info = read_json_lenient(run.run_info, warnings)
    return info if isinstance(info, dict) else {}


def read_fingerprint(run: RunDir, warnings: list[str]) -> dict[str, Any] | None:
    """RUN/data/fingerprint.json as a dict, or None."""
    fp = read_json_lenient(run.fingerprint, warnings)
    return fp if isinstance(fp, dict) else None


def read_metric_rows(run: RunDir, warnings: list[str]) -> list[dict[str, Any]] | None:
    """RUN/metrics.jsonl rows, skipping bad lines with a warning; None if the file is missing."""
    if not run.metrics.is_file():
        return None
    return read_jsonl_lenient(run.metrics, warnings)
