"""Strict JSONL reading for inputs that must be whole (prompts, benchmark items, judge questions).

Training data goes through tuneloop.data.load instead, which keeps going and rejects bad rows;
these inputs are small and hand-written, so the first bad line stops with its file:line.
"""

from __future__ import annotations

import json
from pathlib import Path

from tuneloop.errors import DataError, TuneloopError


def read_jsonl_objects(path: str | Path, *, error: type[TuneloopError] = DataError,
                       example: str = '{"field": "value"}') -> list[tuple[str, dict]]:
    """Rows of a JSONL file as (`file:line`, object); blank lines skipped; bad input raises `error`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise error(f"cannot read file: {exc.strerror}", where=str(path),
                    fix="pass an existing JSONL file") from None
    rows: list[tuple[str, dict]] = []
    for n, raw in enumerate(data.splitlines(), 1):
        where = f"{path}:{n}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"not UTF-8 (byte {exc.start})", where=where,
                        fix="re-save the file as UTF-8") from None
        if n == 1:
            text = text.lstrip("\ufeff")  # editors on Windows write a BOM
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(f"invalid JSON ({exc.msg} at column {exc.colno})", where=where,
                        fix="fix the line; each line must be one JSON object") from None
        if not isinstance(row, dict):
            raise error("row is not a JSON object", where=where,
                        fix=f"write one object per line, e.g. {example}")
        rows.append((where, row))
    return rows
