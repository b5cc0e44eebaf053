"""Contamination scan: word n-gram overlap between training rows and eval items.

Words are normalised (lower-cased, punctuation dropped). The default n=13 follows the GPT-3 and
PaLM contamination studies. Eval items shorter than n words are matched as a whole (their full
word sequence must appear contiguously in a training row), so short prompts are still checked
rather than silently skipped. The eval side is indexed (it is usually the smaller one) and each
training row is streamed past it once per distinct n-gram length.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneloop.data.records import Record

_WORD = re.compile(r"\w+")
# What is scanned: a plain string, a Record, or a mapping with text fields (and an optional
# "where" label). Suites are turned into these by the eval side (tuneloop.eval.contamination),
# so this module knows nothing of evaluation formats.
EvalItem = Record | str | Mapping[str, Any]


def words(text: str) -> list[str]:
    """Normalised words: lower-case, punctuation and whitespace removed."""
    return _WORD.findall(text.lower())


def item_text(item: EvalItem) -> str:
    """The text of a record, a plain string, or a dict with messages/text/prompt fields."""
    if isinstance(item, str):
        return item
    if isinstance(item, Record):
        if item.messages is None:
            return item.text or ""
        return "\n".join(m["content"] for m in item.messages)
    if "messages" in item:
        return "\n".join(str(m.get("content", "")) for m in item["messages"])
    keys = ("text", "prompt", "instruction", "input", "question", "output", "completion",
            "answer")
    return "\n".join(str(item[k]) for k in keys if item.get(k))


def _label(item: Any, index: int) -> str:
    if isinstance(item, Record):
        return item.where
    if isinstance(item, Mapping) and item.get("where"):
        return str(item["where"])
    return f"item {index + 1}"


def _grams(ws: Sequence[str], n: int) -> set[int]:
    # Python's str hash is stable within one process, which is all an in-memory index needs.
    return {hash(" ".join(ws[i:i + n])) for i in range(len(ws) - n + 1)}


@dataclass
class ItemOverlap:
    """One eval item: how many of its n-grams occur in training data, and in which rows."""

    index: int
    where: str
    n_grams: int
    n_matched: int
    train_rows: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        """Fraction of this item's n-grams found in training data."""
        return self.n_matched / self.n_grams if self.n_grams else 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain dict."""
        return {"index": self.index, "where": self.where, "n_grams": self.n_grams,
                "n_matched": self.n_matched, "share": round(self.share, 4),
                "train_rows": self.train_rows}


@dataclass
class ContaminationReport:
    """Per-eval-item overlap with training data, and totals."""

    n: int
    n_items: int
    n_train: int
    items: list[ItemOverlap]  # only items with any overlap, in eval order
    short_items: int = 0  # items under n words (matched as a whole)

    @property
    def n_contaminated(self) -> int:
        """Eval items sharing at least one n-gram with training data."""
        return len(self.items)

    @property
    def share_contaminated(self) -> float:
        """Fraction of eval items that are contaminated."""
        return self.n_contaminated / self.n_items if self.n_items else 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain dict for reports and the eval index."""
        return {"n": self.n, "n_items": self.n_items, "n_train": self.n_train,
                "n_contaminated": self.n_contaminated,
                "share_contaminated": round(self.share_contaminated, 4),
                "short_items": self.short_items, "items": [i.to_json() for i in self.items]}


def contamination_report(train_records: Iterable[EvalItem], eval_items: Iterable[EvalItem], *,
                         n: int = 13,
                         max_rows_listed: int = 5) -> ContaminationReport:
    """Which eval items share a word n-gram (default 13) with which training rows."""
    if n < 1:
        raise ValueError("n must be at least 1")
    evals = list(eval_items)
    # index: length L -> n-gram hash -> eval item indices holding it
    index: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    totals: list[int] = []
    short = 0
    for k, item in enumerate(evals):
        ws = words(item_text(item))
        size = min(n, len(ws))
        short += 0 < len(ws) < n
        grams = _grams(ws, size) if ws else set()
        totals.append(len(grams))
        for g in grams:
            index[size][g].append(k)
    matched: dict[int, set[int]] = defaultdict(set)
    rows: dict[int, list[str]] = defaultdict(list)
    n_train = 0
    for t, row in enumerate(train_records):
        n_train += 1
        ws = words(item_text(row))
        hit_items: set[int] = set()
        for size, table in index.items():
            for g in _grams(ws, size):
                for k in table.get(g, ()):
                    matched[k].add(g)
                    hit_items.add(k)
        for k in hit_items:
            if len(rows[k]) < max_rows_listed:
                rows[k].append(_label(row, t))
    items = [ItemOverlap(k, _label(evals[k], k), totals[k], len(matched[k]), rows[k])
             for k in sorted(matched)]
    return ContaminationReport(n=n, n_items=len(evals), n_train=n_train, items=items,
                               short_items=short)
