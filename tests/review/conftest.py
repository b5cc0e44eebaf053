"""Review fixtures: a round's files on disk and the review app on a real uvicorn on 127.0.0.1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from reviewhelp import write_round  # also puts tests/backends (fakeserver) on sys.path


@dataclass
class Served:
    """A running review app: its URL, store, inputs and the round's files."""

    url: str
    store: object
    inputs: object
    files: dict[str, Path]
    db: Path


@pytest.fixture
def round_files(tmp_path) -> dict[str, Path]:
    """LOOP/round-002's cases.jsonl, synth/train.jsonl and targets.json."""
    return write_round(tmp_path / "loop")


@pytest.fixture
def served(tmp_path, round_files):
    """The review app over `round_files`, saving into tmp review.sqlite, no access key."""
    from fakeserver import serve_app  # importable once reviewhelp has set the path

    from tuneloop.review.app import create_app
    from tuneloop.review.server import prepare

    db = tmp_path / "review.sqlite"
    store, inputs = prepare(round_files["result"], db, rows=round_files["rows"],
                            targets=round_files["targets"])
    with serve_app(create_app(store, inputs)) as url:
        yield Served(url, store, inputs, round_files, db)
    store.close()
