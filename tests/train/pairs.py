"""Preference pairs for DPO tests: prompt (text or messages), chosen, rejected."""

from __future__ import annotations

import json
import random
from pathlib import Path

_WORDS = ["blue", "wide", "quick", "nine", "deep", "green", "opens", "lazy", "red", "sea"]


def write_pair_rows(path: Path, n: int, seed: int = 0, *, messages: bool = False) -> Path:
    """n distinct pairs as JSONL (the arena export's shape; prompt as messages if asked)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            question = f"List {rng.randint(2, 5)} colours (item {i})."
            good = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 8)))
            bad = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 8)))
            prompt = [{"role": "user", "content": question}] if messages else question
            row = {"prompt": prompt, "chosen": f"Sure: {good}.", "rejected": f"No. {bad}",
                   "chosen_model": "a", "rejected_model": "b", "vote_id": i}
            fh.write(json.dumps(row) + "\n")
    return path
