"""Row and file helpers shared by the data-layer tests (a unique module name, not conftest)."""

from __future__ import annotations

import json
from pathlib import Path


def write_jsonl(path: Path, rows: list) -> Path:
    """Write rows (dicts are JSON-encoded, str/bytes written as-is) one per line."""
    with path.open("wb") as fh:
        for row in rows:
            if isinstance(row, bytes):
                fh.write(row + b"\n")
            elif isinstance(row, str):
                fh.write(row.encode() + b"\n")
            else:
                fh.write(json.dumps(row).encode() + b"\n")
    return path


def alpaca(i: int, **kw) -> dict:
    """A distinct, valid Alpaca row."""
    row = {"instruction": f"Explain topic number {i} in simple words for a beginner",
           "input": "", "output": f"Topic {i} is about item{i} and how it relates to thing{i * 7}."}
    row.update(kw)
    return row
