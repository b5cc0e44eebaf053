"""Eval fixtures: a fake fine-tuned run dir (different weights, metadata naming the tiny base)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# A training row that copies a suite prompt word for word (>= 13 words): contamination must see it.
LEAKED_PROMPT = ("Please explain in one sentence why the quick brown fox jumps over the lazy dog "
                 "every single morning.")


@pytest.fixture(scope="session")
def leaked_prompt() -> str:
    """The suite prompt that the fake run's training data contains verbatim."""
    return LEAKED_PROMPT


@pytest.fixture(scope="session")
def tuned_run_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """RUN/ with model/ (full weights, seed 1), tuneloop_model.json and config.yaml."""
    from tiny import save_tiny_model_dir

    from tuneloop.models import save_model_metadata

    run = tmp_path_factory.mktemp("runs") / "tuned-run"
    save_tiny_model_dir(run / "model", seed=1)
    save_model_metadata(run / "model", base_model=str(tiny_model_dir), method="full",
                        template="auto", format="chat")
    train = run.parent / "train.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": LEAKED_PROMPT},
                      {"role": "assistant", "content": "Because it is quick."}]},
        {"messages": [{"role": "user", "content": "What is the capital of France?"},
                      {"role": "assistant", "content": "Paris."}]},
    ]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (run / "config.yaml").write_text(
        f"name: tuned\nmodel: {tiny_model_dir}\nmethod: full\ndata:\n  train: ['{train}']\n",
        encoding="utf-8")
    return run
