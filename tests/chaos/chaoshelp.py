"""Chaos helpers: data, configs, and watching a run from outside (metrics.jsonl, checkpoints/)
to signal it at a chosen moment."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import yaml


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
