"""The run's quality numbers (stats.json): counts by filter, novelty histogram, lengths, words."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

NOVELTY_BINS = [round(i / 10, 1) for i in range(11)]  # 0.0 .. 1.0, last bin closed
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]*")


def _percentile(values: list[int], q: float) -> int:
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


@dataclass
class SynthStats:
    """Counters a run fills as it goes; `to_json` is what stats.json and the report read."""

    recipe: str
    rejected: Counter = field(default_factory=Counter)  # reason -> candidates/rows dropped
    dropped_instances: Counter = field(default_factory=Counter)
    novelty: list[float] = field(default_factory=list)  # ROUGE-L to nearest, every scored item
    lengths: list[int] = field(default_factory=list)  # words per accepted machine instruction
    first_words: Counter = field(default_factory=Counter)
    rows: Counter = field(default_factory=Counter)  # "human" / "machine"
    accepted: int = 0  # machine tasks (self-instruct) or Q/A pairs (docs) kept
    classification: int = 0
    stopped: str = "running"
    extra: dict[str, Any] = field(default_factory=dict)

    def reject(self, reason: str, n: int = 1) -> None:
        """Count a drop by reason."""
        self.rejected[reason] += n

    def accept_text(self, text: str) -> None:
        """Record an accepted machine instruction/question's length and first word."""
        self.accepted += 1
        self.lengths.append(len(text.split()))
        m = _WORD_RE.search(text)
        if m:
            self.first_words[m.group(0).lower()] += 1

    def to_json(self, requests: dict[str, Any]) -> dict[str, Any]:
        """JSON-ready summary."""
        hist = [0] * 10
        for v in self.novelty:
            hist[min(9, int(v * 10))] += 1
        total_rows = sum(self.rows.values())
        return {
            "recipe": self.recipe,
            "stopped": self.stopped,
            "accepted": self.accepted,
            "rejected_total": sum(self.rejected.values()),
            "rejected": dict(self.rejected.most_common()),
            "dropped_instances": dict(self.dropped_instances.most_common()),
            # every reject and every dropped instance is one line of rejects.jsonl
            "rejects_rows": sum(self.rejected.values()) + sum(self.dropped_instances.values()),
            "classification_tasks": self.classification,
            "rows": {"human": self.rows["human"], "machine": self.rows["machine"],
                     "total": total_rows},
            "machine_share": (self.rows["machine"] / total_rows) if total_rows else None,
            "novelty_histogram": {"bins": NOVELTY_BINS, "counts": hist},
            "instruction_words": {
                "n": len(self.lengths), "p50": _percentile(self.lengths, 0.5),
                "p90": _percentile(self.lengths, 0.9),
                "max": max(self.lengths) if self.lengths else 0,
                "histogram": _length_hist(self.lengths)},
            "first_words": self.first_words.most_common(20),
            "requests": requests,
            **self.extra,
        }


def _length_hist(lengths: list[int]) -> dict[str, int]:
    edges = [(1, 5), (6, 10), (11, 20), (21, 40), (41, 80), (81, 150), (151, 10**9)]
    out = {}
    for lo, hi in edges:
        label = f"{lo}+" if hi == 10**9 else f"{lo}-{hi}"
        out[label] = sum(1 for n in lengths if lo <= n <= hi)
    return out
