"""Fixtures for training tests: a small chat dataset and a config builder on the tiny model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from tinyruns import one_torch_thread, write_config  # noqa: F401 - one_torch_thread: autouse

_SUBJECTS = ["the sea", "a fox", "Paris", "the office", "red", "numbers", "the report", "a dog"]
_VERBS = ["Describe", "Explain", "Summarise", "List facts about", "Write about", "Define"]


def write_chat_rows(path: Path, n: int, seed: int = 0) -> Path:
    """n distinct chat rows (varied lengths) as JSONL."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            subj, verb = rng.choice(_SUBJECTS), rng.choice(_VERBS)
            answer = " ".join(rng.choice(["blue", "wide", "quick", "nine", "deep", "green",
                                          "opens", "lazy"]) for _ in range(rng.randint(3, 12)))
            row = {"messages": [{"role": "user", "content": f"{verb} {subj} (item {i})."},
                                {"role": "assistant", "content": f"Item {i}: {answer}."}]}
            fh.write(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="session")
def chat_data(tmp_path_factory) -> Path:
    """48 chat rows."""
    return write_chat_rows(tmp_path_factory.mktemp("data") / "chat.jsonl", 48)


@pytest.fixture
def make_config(tiny_model_dir, chat_data, tmp_path):
    """Write a YAML config for the tiny model; keyword sections override the defaults."""

    def _make(name: str = "cfg.yaml", **sections) -> Path:
        cfg = {
            "name": "t",
            "model": str(tiny_model_dir),
            "method": "full",
            "data": {"train": [str(chat_data)], "eval_fraction": 0.125, "max_length": 96},
            "training": {"max_steps": 6, "batch_size": 4, "learning_rate": 1e-3, "seed": 1,
                         "scheduler": "linear", "warmup_steps": 1,
                         # pinned: exact-equality tests (resume, DDP) compare fp32 numerics,
                         # and `auto` is bf16 on CPUs with native bf16
                         "precision": "fp32"},
            "save": {"interval": 3, "keep_last": 5},
            "logging": {"interval": 1, "report_to": [], "progress": False},
        }
        return write_config(tmp_path / name, cfg, sections)

    return _make
