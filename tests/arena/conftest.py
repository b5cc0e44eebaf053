"""Arena fixtures: the scripted answer server, a prepared arena database, the app on uvicorn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from arenahelp import fake_openai_app, write_prompts
from fakeserver import serve_app


@pytest.fixture(scope="session")
def fake_backend():
    """Base URL of the scripted OpenAI-compatible server (one per test session)."""
    app = fake_openai_app()
    with serve_app(app) as url:
        yield url + "/v1", app


@dataclass
class Prepared:
    """An arena database with every answer generated, ready for create_app."""

    db: Path
    store: object
    prompt_ids: list[str]
    models: list[str]
    specs: list[str]


@pytest.fixture
def prepared(tmp_path, fake_backend):
    """Three models (alpha, beta, gamma) on the scripted backend, answers stored in tmp arena.sqlite."""
    from tuneloop.arena.server import prepare
    from tuneloop.backends import GenParams

    url, _ = fake_backend
    specs = [f"{m}=openai:{url}#{m}" for m in ("alpha", "beta", "gamma")]
    db = tmp_path / "arena.sqlite"
    store, ids, models = prepare(write_prompts(tmp_path / "prompts.jsonl"), specs, db,
                                 GenParams(max_tokens=32), progress=False)
    yield Prepared(db, store, ids, models, specs)
    store.close()


@pytest.fixture
def arena_url(prepared):
    """The arena app on a real uvicorn server on 127.0.0.1 (no key, no vote limit)."""
    from tuneloop.arena.app import create_app

    app = create_app(prepared.store, prompt_ids=prepared.prompt_ids, models=prepared.models)
    with serve_app(app) as url:
        yield url
