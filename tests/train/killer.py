"""Test launcher: train a config and SIGKILL this process at an exact point (R1/R3).

    python tests/train/killer.py CONFIG.yaml RUN_DIR --after-step K   # killed right after step K
    python tests/train/killer.py CONFIG.yaml RUN_DIR --in-save K      # killed half-way saving K

The product reads no test variables and carries no kill hook: --after-step uses the public
TrainHooks.after_step callback; --in-save wraps the checkpoint writer's file sync in this
process, so the kill lands after step K's weights are on disk and before its optimizer state.
Kills at random moments, sent from another process, are in tests/chaos/.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path


def _kill_at(k: int):
    def hook(step: int, *_: object) -> None:
        if step == k:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _kill_in_save(k: int) -> None:
    from tuneloop.train import checkpoint

    fsync = checkpoint._fsync_file
    tmp = f"{checkpoint.TMP_PREFIX}{checkpoint.step_dir_name(k)}-"

    def fsync_then_kill(path: Path) -> None:
        fsync(path)
        if Path(path).name == "model.safetensors" and Path(path).parent.name.startswith(tmp):
            os.kill(os.getpid(), signal.SIGKILL)

    checkpoint._fsync_file = fsync_then_kill


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", type=Path)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--after-step", type=int, default=None)
    p.add_argument("--in-save", type=int, default=None)
    args = p.parse_args()

    from tuneloop.train import TrainHooks, load_config, train

    if args.in_save is not None:
        _kill_in_save(args.in_save)
    hooks = TrainHooks(
        after_step=_kill_at(args.after_step) if args.after_step is not None else None)
    train(load_config(args.config), output_dir=args.run_dir, progress=False, hooks=hooks)


if __name__ == "__main__":
    main()
