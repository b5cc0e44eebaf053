"""The data loaders fed random bytes in every supported format: a TuneloopError naming the file,
or every row accounted for (clean + rejected = rows read), never another exception (R10, R12)."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tuneloop.data.check import CheckOptions, check_files
from tuneloop.errors import TuneloopError

ROWS = [{"instruction": f"Question {i}?", "input": "", "output": f"Answer {i}."} for i in range(4)]


def _valid(fmt: str) -> bytes:
    if fmt == ".jsonl":
        return b"".join(json.dumps(r).encode() + b"\n" for r in ROWS)
    if fmt == ".json":
        return json.dumps(ROWS).encode()
    if fmt == ".csv":
        return ("instruction,input,output\n" + "".join(
            f'"{r["instruction"]}",,"{r["output"]}"\n' for r in ROWS)).encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(ROWS), buf)
    return buf.getvalue()


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    """Overwrite bytes at (position, value) pairs, then maybe truncate."""
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


CONTENT = st.one_of(
    st.binary(max_size=400).map(lambda b: ("random", b)),
    st.tuples(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
              st.one_of(st.none(), st.integers(0, 2000))).map(lambda e: ("mutated", e)),
)
COUNTS: dict[str, dict[str, int]] = {}


@pytest.mark.parametrize("fmt", [".jsonl", ".json", ".csv", ".parquet"])
def test_random_bytes_in_every_format_fail_cleanly_or_account_for_every_row(fmt):
    """R10, R12: 150 seeded inputs per format, half pure random bytes, half a valid file with
    bytes overwritten and/or cut short: `check_files` either raises a TuneloopError that names
    the file or returns a report where clean + rejected = rows read."""
    valid = _valid(fmt)
    counts = COUNTS.setdefault(fmt, {"inputs": 0, "error": 0, "accounted": 0})

    @seed(20261203)
    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(content=CONTENT)
    def one(content):
        kind, value = content
        data = value if kind == "random" else _mutate(valid, *value)
        counts["inputs"] += 1
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"data{fmt}"
            path.write_bytes(data)
            try:
                report = check_files(path, options=CheckOptions())
            except TuneloopError as exc:
                counts["error"] += 1
                assert str(path) in exc.message() or path.name in exc.message(), exc.message()
                return
            n_clean = report.write_clean(Path(tmp) / "clean.jsonl")
            n_rej = report.write_rejects(Path(tmp) / "rejects.jsonl")
            assert n_clean + n_rej == report.rows_read
            counts["accounted"] += 1

    one()
    print(f"\ndata fuzz {fmt}: {counts}")
    assert counts["inputs"] == 150 and counts["error"] + counts["accounted"] == 150
