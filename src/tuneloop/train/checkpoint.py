"""Atomic, resumable checkpoints: tmp dir + fsync + rename; keep-last-N + keep-best rotation.

Layout of `RUN/checkpoints/step-000050/` (R2):
  model.safetensors     trainable parameters (the LoRA adapter, or every weight for full)
  optimizer.pt          optimizer state (torch.save; read back with weights_only=True, R7)
  scheduler.pt          LR scheduler state (same)
  rng.json              python / numpy / torch RNG states of every process
  trainer_state.json    step, epoch, data position, fingerprints, best metric — written last

A directory only gets its `step-N` name by an atomic rename after every file is fsynced, so a
kill during a save leaves a `.tmp-…` directory that is ignored (R3); a failed write leaves the
previous checkpoints untouched because rotation runs only after the new one is complete (R4).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.errors import CheckpointError

STATE_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng.json", "trainer_state.json")
_STEP_RE = re.compile(r"^step-(\d+)$")
TMP_PREFIX = ".tmp-"


def step_dir_name(step: int) -> str:
    """`step-000050`."""
    return f"step-{step:06d}"


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    # Directory fsync makes the rename itself durable (POSIX); not available on every OS.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch RNG states as JSON-able data."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of capture_rng."""
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    path: Path
    weights: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    state: dict[str, Any]


def save_checkpoint(
    root: Path,
    step: int,
    *,
    weights: dict[str, Any],
    optimizer: dict[str, Any],
    scheduler: dict[str, Any],
    rng: dict[str, Any],
    state: dict[str, Any],
    during_save: Callable[[int, Path], None] | None = None,
) -> Path:
    """Write `root/step-N` atomically; CheckpointError (previous ones intact) if a write fails.

    `during_save(step, tmp_dir)` is called half-way (weights written, optimizer state not yet):
    tests kill the process there to prove a partial save is never resumed from (R3).
    """
    import torch
    from safetensors.torch import save_file

    root = Path(root)
    final = root / step_dir_name(step)
    tmp = root / f"{TMP_PREFIX}{step_dir_name(step)}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_tmp(root)
        tmp.mkdir()
        # contiguous CPU copies: safetensors refuses views/shared storage
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _fsync_file(tmp / "model.safetensors")
        if during_save is not None:
            during_save(step, tmp)
        torch.save(optimizer, tmp / "optimizer.pt")
        _fsync_file(tmp / "optimizer.pt")
        torch.save(scheduler, tmp / "scheduler.pt")
        _fsync_file(tmp / "scheduler.pt")
        for name, data in (("rng.json", rng), ("trainer_state.json", {**state, "step": step})):
            with open(tmp / name, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if final.exists():
            # Only possible after a resume from an older step re-reaches this one: replace it.
            trash = root / f"{TMP_PREFIX}old-{final.name}-{os.getpid()}"
            os.rename(final, trash)
            os.rename(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(root)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"could not write checkpoint step {step}: {exc.strerror or exc}",
            where=str(final),
            fix="free disk space / check permissions; earlier checkpoints were left intact",
        ) from exc
    return final


def _remove_stale_tmp(root: Path) -> None:
    """Delete partial directories left by a killed save (they are never resumed from)."""
    for p in root.iterdir():
        if p.name.startswith(TMP_PREFIX) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def checkpoint_step(path: Path) -> int | None:
    """The step of a `step-N` directory name, else None."""
    m = _STEP_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def _missing(path: Path) -> list[str]:
    """The resumable state files that `path` lacks."""
    return [f for f in STATE_FILES if not (Path(path) / f).is_file()]


def is_complete(path: Path) -> bool:
    """True if every resumable state file is present."""
    return not _missing(path)


def list_checkpoints(root: Path) -> list[Path]:
    """`step-N` directories under root sorted by step (partial `.tmp-` dirs are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def find_latest_complete(root: Path) -> Path | None:
    """Newest complete checkpoint; a newest dir that is weights-only is refused (R2)."""
    ckpts = list_checkpoints(root)
    if not ckpts:
        return None
    latest = ckpts[-1]
    missing = _missing(latest)
    if missing:
        raise CheckpointError(
            f"checkpoint {latest.name} cannot be resumed: it has no {', '.join(missing)} "
            "(a weights-only directory has no optimizer/scheduler/RNG/data position)",
            where=str(latest),
            fix="start a new run with `model:` set to these weights, or delete the directory",
        )
    return latest


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint; pickles are loaded with weights_only=True and refused otherwise (R7)."""
    import pickle

    import torch
    from safetensors.torch import load_file

    path = Path(path)
    missing = _missing(path)
    if missing:
        raise CheckpointError(
            f"not a resumable checkpoint (missing {', '.join(missing)})", where=str(path)
        )
    try:
        weights = load_file(str(path / "model.safetensors"))
        optimizer = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        scheduler = torch.load(path / "scheduler.pt", map_location="cpu", weights_only=True)
        rng = json.loads((path / "rng.json").read_text(encoding="utf-8"))
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"refusing to load checkpoint: {first}",
            where=str(path),
            fix="checkpoints are loaded without arbitrary pickles; use one written by tuneloop",
        ) from None
    return Checkpoint(path, weights, optimizer, scheduler, rng, state)


def rotate(root: Path, *, keep_last: int, best: Path | None = None) -> list[Path]:
    """Delete complete checkpoints beyond the newest `keep_last`, never the best (R5)."""
    ckpts = [p for p in list_checkpoints(root) if is_complete(p)]
    keep = {p.name for p in ckpts[-max(keep_last, 1):]}  # never delete every checkpoint
    if best is not None:
        keep.add(Path(best).name)
    removed = []
    for p in ckpts:
        if p.name not in keep:
            shutil.rmtree(p)
            removed.append(p)
    return removed
