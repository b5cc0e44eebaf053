"""Where tuneloop keeps things: the workspace home (runs + index) and new run directories."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path


def workspace_home() -> Path:
    """The workspace root: $TUNELOOP_HOME, else `.tuneloop` in the current directory."""
    return Path(os.environ.get("TUNELOOP_HOME", ".tuneloop")).resolve()


def runs_root() -> Path:
    """Default parent of run directories (`<home>/runs`)."""
    return workspace_home() / "runs"


def new_run_dir(name: str, parent: Path | None = None) -> Path:
    """Create and return a fresh, uniquely named run directory `<parent>/<name>-<YYYYmmdd-HHMMSS>`."""
    parent = Path(parent) if parent is not None else runs_root()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = parent / f"{slug}-{stamp}"
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = parent / f"{slug}-{stamp}-{suffix}"
    candidate.mkdir(parents=True)
    return candidate
