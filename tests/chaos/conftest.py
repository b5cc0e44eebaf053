"""Chaos fixtures: a fork-server launcher of the real CLI, data, configs and helpers to watch a
run from outside (metrics.jsonl, checkpoints/) and signal it at a chosen moment."""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

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


def write_rows(path: Path, n: int, seed: int = 0, extra: list[str] | None = None) -> Path:
    """n chat rows as JSONL (and `extra` answers appended as further rows)."""
    rng = random.Random(seed)
    words = ["blue", "wide", "quick", "nine", "deep", "green", "opens", "lazy"]
    answers = [f"Item {i}: " + " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
               for i in range(n)] + list(extra or [])
    with open(path, "w", encoding="utf-8") as fh:
        for i, answer in enumerate(answers):
            row = {"messages": [{"role": "user", "content": f"Describe the sea (item {i})."},
                                {"role": "assistant", "content": answer}]}
            fh.write(json.dumps(row) + "\n")
    return path


def write_config(path: Path, model: Path, data: Path, **sections) -> Path:
    cfg = {
        "name": "chaos", "model": str(model), "method": "lora",
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1},  # dropout: resume must restore the RNG
        "data": {"train": [str(data)], "eval_fraction": 0.0, "max_length": 96},
        "training": {"max_steps": 12, "batch_size": 4, "learning_rate": 2e-3, "seed": 3,
                     "scheduler": "cosine", "warmup_steps": 2},
        "save": {"interval": 2, "keep_last": 2},
        "logging": {"interval": 1, "report_to": [], "progress": False},
    }
    for key, value in sections.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = {**cfg[key], **value} if isinstance(cfg.get(key), dict) else value
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def train_rows(run: Path) -> list[dict]:
    """Every `train` row of RUN/metrics.jsonl (all attempts), strictly parsed."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [r for r in rows if r["kind"] == "train"]


class NewRows:
    """The `train` rows appended to RUN/metrics.jsonl since this watcher was made; reads only
    the new bytes, so polling it every millisecond costs the trained process little CPU."""

    def __init__(self, run: Path):
        self.path = run / "metrics.jsonl"
        self.pos = self.path.stat().st_size if self.path.is_file() else 0
        self.rows: list[dict] = []
        self._tail = b""

    def last_step(self) -> int:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        if size > self.pos:
            with open(self.path, "rb") as fh:
                fh.seek(self.pos)
                data = self._tail + fh.read(size - self.pos)
            self.pos = size
            *lines, self._tail = data.split(b"\n")
            self.rows += [r for r in map(json.loads, filter(None, lines)) if r["kind"] == "train"]
        return self.rows[-1]["step"] if self.rows else 0


def wait_until(cond, timeout: float, pid: int | None = None, poll: float = 0.001) -> bool:
    """Poll cond() until true (True) or timeout / the process `pid` ended (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        if pid is not None and not _alive(pid):
            return bool(cond())
        time.sleep(poll)
    return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def same_weights(a: dict, b: dict, tol: float) -> bool:
    return a.keys() == b.keys() and all((a[k] - b[k]).abs().max().item() <= tol for k in a)
