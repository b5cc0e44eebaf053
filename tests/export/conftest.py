"""Fixtures for export tests: a short LoRA run and a full run of the tiny model (made once)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from tinyruns import one_torch_thread  # noqa: F401 - autouse fixture

_WORDS = ["blue", "wide", "quick", "nine", "deep", "green", "opens", "lazy", "sea", "fox"]


def _write_rows(path: Path, n: int) -> Path:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            answer = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 8)))
            row = {"messages": [{"role": "user", "content": f"Describe item {i}."},
                                {"role": "assistant", "content": f"Item {i} is {answer}."}]}
            fh.write(json.dumps(row) + "\n")
    return path


def make_run(root: Path, model: str, method: str, *, steps: int = 4, **extra) -> Path:
    """Train a short run with tuneloop's public train API; returns the run directory."""
    from tuneloop.train import load_config, train

    root.mkdir(parents=True, exist_ok=True)
    cfg = {
        "name": f"export-{method}", "model": model, "method": method,
        "data": {"train": [str(_write_rows(root / "chat.jsonl", 24))], "eval_fraction": 0.125,
                 "max_length": 64},
        "training": {"max_steps": steps, "batch_size": 4, "learning_rate": 5e-3, "seed": 1},
        "save": {"interval": steps},
        "logging": {"interval": 1, "report_to": [], "progress": False},
        **extra,
    }
    if method == "lora":
        cfg["lora"] = {"r": 4, "alpha": 8, "dropout": 0.0}
    (root / "cfg.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return train(load_config(root / "cfg.yaml"), output_dir=root / "run", progress=False).run_dir


@pytest.fixture(name="make_run")
def make_run_fixture():
    """`make_run` for tests that train their own run (a module named conftest is not importable
    reliably: pytest loads one per test directory)."""
    return make_run


@pytest.fixture(scope="session")
def lora_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A 4-step LoRA run (r=4) on the tiny model."""
    return make_run(tmp_path_factory.mktemp("lora"), str(tiny_model_dir), "lora")


@pytest.fixture(scope="session")
def full_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A 4-step full fine-tuning run on the tiny model."""
    return make_run(tmp_path_factory.mktemp("full"), str(tiny_model_dir), "full")
