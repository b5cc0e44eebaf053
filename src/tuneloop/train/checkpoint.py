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

import errno
import json
import os
import random
import re
import shutil
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
) -> Path:
    """Write `root/step-N` atomically; CheckpointError (previous ones intact) if a write fails.

    On any failure the partial `.tmp-step-N-PID` directory is removed; a full disk is named as
    such, with the size needed and the step still intact (R4)."""
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
    except BaseException as exc:
        # Whatever stopped the write (full disk, Ctrl-C, a library error), the partial
        # directory is ours: measure what was left, then remove it so it frees its space (R4).
        written = _dir_bytes(tmp)
        free = _free_bytes(root)
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt / SystemExit: the caller records the interruption
        needed = estimate_bytes(root, weights, optimizer)
        if _is_disk_full(exc, free, needed - written):
            raise CheckpointError(
                f"No space left on {describe_device(root)} while saving step {step} (needs ≈ "
                f"{_mb(needed)} MB; {_intact(root)}; free space and run with --resume)",
                where=str(final),
                fix="free disk space (or point --output-dir at a larger disk) and run the same "
                    "command with --resume",
            ) from exc
        if isinstance(exc, OSError):
            raise CheckpointError(
                f"could not write checkpoint step {step}: {exc.strerror or exc}; {_intact(root)}",
                where=str(final),
                fix="check the permissions and the disk of the run directory, then run with "
                    "--resume",
            ) from exc
        raise
    return final


# ---------------------------------------------------------------------------- disk space (R4)

# A checkpoint's files beyond its tensors (JSON, pickle framing, safetensors header).
_OVERHEAD = 64 * 1024


def _mb(n: int) -> str:
    return f"{max(n, 0) / 1e6:.1f}"


def _tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor inside nested dicts/lists (a state_dict)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _dir_bytes(path: Path) -> int:
    """Bytes of the files directly inside `path` (0 if it is missing)."""
    try:
        return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())
    except OSError:
        return 0


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return -1  # unknown


def estimate_bytes(root: Path, weights: dict[str, Any], optimizer: dict[str, Any]) -> int:
    """The size the next checkpoint will take: the newest complete one's, else its tensors'."""
    done = _complete(root)
    if done:
        return _dir_bytes(done[-1])
    return _tensor_bytes(weights) + _tensor_bytes(optimizer) + _OVERHEAD


def describe_device(path: Path) -> str:
    """`tmpfs at /mnt/small`: the filesystem that holds `path` (its mount point)."""
    path = Path(path).resolve()
    mount = path
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    source = ""
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) > 2 and parts[1] == str(mount):
                    source = parts[0]  # the last line for a mount point is the one in effect
    except OSError:
        pass
    return f"{source} at {mount}" if source else str(mount)


def _is_disk_full(exc: BaseException, free: int, remaining: int) -> bool:
    """ENOSPC, or a library error (torch.save's "unexpected pos"/"enforce fail", safetensors)
    raised while the filesystem had less room than the rest of the checkpoint needs."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return 0 <= free < max(remaining, 0) + _OVERHEAD


def _complete(root: Path) -> list[Path]:
    return [p for p in list_checkpoints(root) if is_complete(p)]


def _intact(root: Path) -> str:
    done = _complete(root)
    return f"step {checkpoint_step(done[-1])} is intact" if done else "no earlier checkpoint"


def check_space(root: Path, weights: dict[str, Any], optimizer: dict[str, Any]) -> str | None:
    """A warning when the next checkpoint will likely not fit on the disk of `root`, else None."""
    root = Path(root)
    probe = root if root.exists() else root.parent
    free = _free_bytes(probe)
    needed = estimate_bytes(root, weights, optimizer)
    if 0 <= free < needed:
        return (f"the next checkpoint needs ≈ {_mb(needed)} MB and {describe_device(probe)} has "
                f"{_mb(free)} MB free; the save will fail unless space is freed")
    return None


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
