"""Property: random mixes of valid rows, garbage and blank lines — clean + rejects = input (R12)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneloop.data.check import CheckOptions, check_files

WORDS = st.text(alphabet="abcdefghij klmnop", min_size=1, max_size=30).filter(str.strip)
VALID = st.builds(lambda i, o, inp: {"instruction": i, "input": inp, "output": o},
                  WORDS, WORDS, st.sampled_from(["", "context here"]))
GARBAGE = st.one_of(
    st.binary(max_size=40).map(lambda b: b"{" + b.replace(b"\n", b"")),  # broken / non-UTF-8
    st.sampled_from([b"[1, 2]", b"42", b"null", b'"just a string"']),  # JSON, not an object
    st.builds(lambda v: json.dumps({"instruction": v, "output": "x"}).encode(),
              st.one_of(st.integers(), st.lists(st.integers(), max_size=2), st.none())),
    st.just(b'{"instruction": "no output"}'),
    st.just(b'{"instruction": "q", "output": "   "}'),  # parses, fails validation
)
LINES = st.lists(st.one_of(VALID.map(lambda r: ("valid", json.dumps(r).encode())),
                           GARBAGE.map(lambda b: ("garbage", b)),
                           st.just(("blank", b"  "))),
                 min_size=1, max_size=30)
DUP_KINDS = {"exact_duplicate", "near_duplicate"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=LINES)
def test_clean_plus_rejects_equals_input_with_correct_lines(lines):
    """R12: every non-blank input line is in exactly one output, rejects at their own line."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mix.jsonl"
        # the first valid row is kept first, so at least one row in most files survives
        path.write_bytes(b"".join(b + b"\n" for _, b in lines))
        report = check_files(path, options=CheckOptions())
        n_clean = report.write_clean(Path(tmp) / "clean.jsonl")
        n_rej = report.write_rejects(Path(tmp) / "rejects.jsonl")
        rejected = [json.loads(x) for x in (Path(tmp) / "rejects.jsonl").read_text().splitlines()]

    expected = {n: kind for n, (kind, _) in enumerate(lines, start=1) if kind != "blank"}
    assert n_clean + n_rej == len(expected) == report.rows_read
    assert report.skipped_blank == sum(1 for k, _ in lines if k == "blank")
    kept_lines = [r.line for r in report.kept]
    rej_lines = [r["line"] for r in rejected]
    assert sorted(kept_lines + rej_lines) == sorted(expected)  # each line exactly once
    assert all(expected[n] == "valid" for n in kept_lines)
    for row in rejected:
        kinds = {i["kind"] for i in row["reasons"]}
        if expected[row["line"]] == "garbage":
            assert kinds and not kinds & DUP_KINDS  # rejected for what it is
            assert row["raw"] is not None
        else:
            assert kinds <= DUP_KINDS  # a valid row is only ever dropped as a duplicate
    # raw text of a rejected line is the line itself (decoded, bad bytes shown escaped, a
    # trailing CR taken as part of a CRLF line end)
    raw_by_line = {n: b.removesuffix(b"\r") for n, (_, b) in enumerate(lines, start=1)}
    for row in rejected:
        assert row["raw"] == raw_by_line[row["line"]].decode("utf-8", "backslashreplace")
