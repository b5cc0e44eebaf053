"""Fixtures for the data-layer tests: small files written the way users write them."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_rows import alpaca, write_jsonl  # noqa: F401  (re-exported for fixtures)


@pytest.fixture
def jsonl(tmp_path):
    """Factory: jsonl(rows, name="x.jsonl") -> path."""
    def make(rows: list, name: str = "data.jsonl") -> Path:
        return write_jsonl(tmp_path / name, rows)
    return make
