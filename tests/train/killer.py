"""Test launcher: train a config with a hook that SIGKILLs this process (fault injection, R1/R3).

    python tests/train/killer.py CONFIG.yaml RUN_DIR --after-step K   # killed right after step K
    python tests/train/killer.py CONFIG.yaml RUN_DIR --in-save K      # killed half-way saving K

The product reads no test variables: the kill comes from the hooks this script passes to the
library's train(), the same call `tuneloop train` makes.
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", type=Path)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--after-step", type=int, default=None)
    p.add_argument("--in-save", type=int, default=None)
    args = p.parse_args()

    from tuneloop.train import TrainHooks, load_config, train

    hooks = TrainHooks(
        after_step=_kill_at(args.after_step) if args.after_step is not None else None,
        during_save=_kill_at(args.in_save) if args.in_save is not None else None)
    train(load_config(args.config), output_dir=args.run_dir, progress=False, hooks=hooks)


if __name__ == "__main__":
    main()
