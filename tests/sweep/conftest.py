"""Fixtures for sweep tests: a small chat dataset, a suite and a tiny-model config to sweep."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from tinyruns import one_torch_thread, write_config  # noqa: F401 - one_torch_thread: autouse

_WORDS = ["blue", "wide", "quick", "nine", "deep", "green", "opens", "lazy"]


@pytest.fixture(scope="session")
def sweep_data(tmp_path_factory) -> Path:
    """40 chat rows with short answers (the held-out 10 % gives the eval loss)."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("sweep-data") / "chat.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(40):
            answer = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 8)))
            fh.write(json.dumps({"messages": [
                {"role": "user", "content": f"Describe the sea (item {i})."},
                {"role": "assistant", "content": f"Item {i}: {answer}."}]}) + "\n")
    return path


@pytest.fixture
def sweep_config(tiny_model_dir, sweep_data, tmp_path):
    """Write a tiny-model training config (full fine-tuning, eval every 2 steps); keyword
    sections are merged into the defaults."""

    def _make(name: str = "sweep.yaml", **sections) -> Path:
        cfg = {
            "name": "s",
            "model": str(tiny_model_dir),
            "method": "full",
            "data": {"train": [str(sweep_data)], "eval_fraction": 0.1, "max_length": 64},
            "training": {"max_steps": 6, "batch_size": 4, "learning_rate": 1e-3, "seed": 1,
                         "precision": "fp32"},
            "eval": {"interval": 2, "batch_size": 8},
            "logging": {"interval": 2, "report_to": [], "progress": False},
        }
        return write_config(tmp_path / name, cfg, sections)

    return _make


@pytest.fixture
def tiny_suite(tmp_path) -> Path:
    """A two-case suite the tiny model can pass one case of whatever it answers."""
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny-suite",
        "max_new_tokens": 4,
        "cases": [
            {"id": "anything", "prompt": "Describe the sea.", "checks": [{"regex": "(?s).*"}]},
            {"id": "never", "prompt": "Describe the sea.",
             "checks": [{"contains": "this text is never generated"}]},
        ],
    }), encoding="utf-8")
    return path
