"""Who wrote each row: `meta.source` ("human" | "machine") as `tuneloop synth` records it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

SOURCES = ("human", "machine")


def row_source(raw: str | None) -> str | None:
    """`meta.source` of a raw JSON row, or None when the row carries no provenance."""
    if not raw:
        return None
    try:
        row: Any = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return None
    meta = row.get("meta") if isinstance(row, dict) else None
    source = meta.get("source") if isinstance(meta, dict) else None
    return source if source in SOURCES else None


def provenance_counts(records: Iterable[Any]) -> Counter | None:
    """Rows by source ("human", "machine", "unknown"), or None if no row has provenance."""
    counts: Counter = Counter(row_source(getattr(r, "raw", None)) or "unknown" for r in records)
    if not counts["human"] and not counts["machine"]:
        return None
    return counts


def provenance_line(records: Iterable[Any]) -> str | None:
    """'provenance: human 7 (63.6%), machine 4 (36.4%)' (+ unknown), or None without any."""
    counts = provenance_counts(records)
    if counts is None:
        return None
    total = sum(counts.values())
    parts = [f"{k} {counts[k]} ({counts[k] / total:.1%})" for k in (*SOURCES, "unknown")
             if counts[k] or k in SOURCES]
    return "provenance: " + ", ".join(parts)
