"""`tuneloop train` under torchrun with two CPU processes (gloo), as the DDP tests launch it."""

from __future__ import annotations

import socket
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_train_cmd(config: Path, output_dir: Path, *, procs: int = 2) -> list[str]:
    """The command line: torchrun from this venv, a free rendezvous port on 127.0.0.1."""
    torchrun = Path(sys.executable).with_name("torchrun")
    return [str(torchrun), "--nproc_per_node", str(procs), "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()), "-m", "tuneloop", "train", str(config),
            "--output-dir", str(output_dir), "--no-progress"]
