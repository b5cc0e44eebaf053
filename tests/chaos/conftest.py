"""Chaos fixtures: a fork-server launcher of the real CLI (the helpers to write data and configs
and to watch a run from outside are in chaoshelp.py: a conftest module cannot be imported by
name reliably, pytest loads one per test directory)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

LAUNCHER = Path(__file__).with_name("launcher.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.chaos)


class Launcher:
    """Talks to tests/chaos/launcher.py: start a `tuneloop` child, learn its pid, wait for it."""

    def __init__(self, home: Path):
        env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
        self.home = home
        self.proc = subprocess.Popen([sys.executable, str(LAUNCHER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert "ready" in self._next(180)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def _next(self, timeout: float) -> dict:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"launcher said nothing for {timeout}s") from None

    def start(self, argv: list[str], log: Path) -> int:
        req = {"argv": [str(a) for a in argv], "log": str(log), "home": str(self.home)}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._next(60)["pid"]

    def wait(self, pid: int, timeout: float = 120) -> int:
        msg = self._next(timeout)
        assert msg["pid"] == pid, msg
        return msg["rc"]

    def run(self, argv: list[str], log: Path, timeout: float = 120) -> int:
        return self.wait(self.start(argv, log), timeout)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def launcher(tmp_path_factory):
    lau = Launcher(tmp_path_factory.mktemp("chaos-home"))
    yield lau
    lau.close()
