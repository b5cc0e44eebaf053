"""The arena on the real embedded model: base vs base + system prompt, answers, a vote, results."""

from __future__ import annotations

import json

import pytest
from arenahelp import Rater, write_prompts
from fakeserver import serve_app

from tuneloop.arena.app import create_app
from tuneloop.arena.results import summarise
from tuneloop.arena.server import prepare
from tuneloop.backends import GenParams

EMBEDDED = "smollm2-135m-instruct"


@pytest.mark.integration
def test_embedded_base_and_prompted_variant(tmp_path, monkeypatch):
    """Both variants answer every prompt (end-of-turn stripped); a restart regenerates nothing."""
    rows = [{"id": "capital", "prompt": "What is the capital of France?"},
            {"id": "color", "prompt": "Name one primary colour."}]
    args = {"system_args": ["prompted=Answer in one short sentence."], "progress": False}
    specs = [f"base={EMBEDDED}", f"prompted={EMBEDDED}"]
    store, ids, models = prepare(write_prompts(tmp_path / "p.jsonl", rows), specs,
                                 tmp_path / "a.sqlite", GenParams(max_tokens=24), **args)
    answers = {(p, m): store.answer(p, m) for p in ids for m in models}
    assert all(text.strip() and "<|im_end|>" not in text for text in answers.values()), answers
    assert "paris" in answers[("capital", "base")].lower()
    params = json.loads(store.db.execute("SELECT params_json FROM answers LIMIT 1").fetchone()[0])
    assert params["max_tokens"] == 24
    app = create_app(store, prompt_ids=ids, models=models)
    with serve_app(app) as base:
        rater = Rater(base, "eve")
        battle_id, csrf, _ = rater.battle()
        assert rater.vote(battle_id, csrf, "a").status_code == 303
        rater.close()
    doc = summarise(store.votes(), store.models(), rounds=20)
    assert doc["votes"] == 1 and {r["model"] for r in doc["ratings"]} == {"base", "prompted"}
    store.close()
    # A restart on the same database generates nothing (no model is even loaded).
    def no_backend(spec):
        raise AssertionError(f"a backend was built for {spec}")

    monkeypatch.setattr("tuneloop.arena.answers.make_generator", no_backend)
    again, _, _ = prepare(tmp_path / "p.jsonl", specs, tmp_path / "a.sqlite",
                          GenParams(max_tokens=24), **args)
    assert {(p, m): again.answer(p, m) for p in ids for m in models} == answers
    again.close()
