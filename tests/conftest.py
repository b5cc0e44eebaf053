"""Shared fixtures: a tiny in-process model directory (unit tier) and the embedded model (integration)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import make_tiny_tokenizer, save_tiny_model_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A plain HF directory holding a random 2-layer Llama + ChatML tokenizer (a local model ref)."""
    return save_tiny_model_dir(tmp_path_factory.mktemp("tiny-model") / "tiny")


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The tiny byte-level BPE tokenizer with a ChatML template."""
    return make_tiny_tokenizer()


@pytest.fixture(autouse=True)
def _isolated_workspace(tmp_path_factory, monkeypatch):
    """Every test gets its own workspace home so runs and the index never land in the checkout."""
    monkeypatch.setenv("TUNELOOP_HOME", str(tmp_path_factory.mktemp("tuneloop-home")))
