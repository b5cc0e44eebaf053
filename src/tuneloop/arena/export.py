"""Decisive votes → preference pairs, one JSON object per line (the DPO input format).

Each row: `prompt` (the chat messages the models answered), `chosen` and `rejected` (answer
strings), `chosen_model`, `rejected_model`, `vote_id`, `battle_id`, `prompt_id`, `rater`, `reason`.
Ties and both-bad votes carry no preference and are counted, not exported. docs/arena.md holds the
schema.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tuneloop.arena.store import open_existing
from tuneloop.errors import UsageError


@dataclass(frozen=True)
class ExportSummary:
    """What `export` wrote: the file, the pairs, and the votes left out (no preference)."""

    out: Path
    pairs: int
    ties: int
    both_bad: int


def preference_rows(db: str | Path) -> tuple[list[dict], int, int]:
    """(rows, ties, both-bad) for every decisive vote in `db`, in the order the votes were cast."""
    store = open_existing(db)
    try:
        rows: list[dict] = []
        ties = both_bad = 0
        for v in store.votes():
            if v["winner"] == "tie":
                ties += 1
                continue
            if v["winner"] == "both_bad":
                both_bad += 1
                continue
            chosen, rejected = ((v["model_a"], v["model_b"]) if v["winner"] == "a"
                                else (v["model_b"], v["model_a"]))
            rows.append({
                "prompt": store.prompt_messages(v["prompt_id"]),
                "chosen": store.answer(v["prompt_id"], chosen),
                "rejected": store.answer(v["prompt_id"], rejected),
                "chosen_model": chosen,
                "rejected_model": rejected,
                "vote_id": v["vote_id"],
                "battle_id": v["battle_id"],
                "prompt_id": v["prompt_id"],
                "rater": v["rater"],
                "reason": v["reason"],
            })
        return rows, ties, both_bad
    finally:
        store.close()


def export_preferences(db: str | Path, out: str | Path) -> ExportSummary:
    """Write the preference pairs of `db` to the JSONL file `out` (atomically)."""
    out = Path(out)
    if out.is_dir():
        raise UsageError("--out is a directory", where=str(out), fix="pass a file like prefs.jsonl")
    rows, ties, both_bad = preference_rows(db)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                   encoding="utf-8")
    os.replace(tmp, out)  # a reader never sees half a file
    return ExportSummary(out.resolve(), len(rows), ties, both_bad)
