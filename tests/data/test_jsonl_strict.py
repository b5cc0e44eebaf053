"""Strict JSONL inputs (prompts, mc items, judge questions): the first bad line names file:line (R10)."""

from __future__ import annotations

import pytest

from tuneloop.data.jsonl import read_jsonl_objects
from tuneloop.errors import DataError, EvalError


def test_rows_with_their_lines_blank_lines_and_bom(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n{"b": 2}\r\n')
    assert read_jsonl_objects(path) == [(f"{path}:1", {"a": 1}), (f"{path}:3", {"b": 2})]


@pytest.mark.parametrize(("content", "message"), [
    (b'{"a": 1}\n{"a": \n', "invalid JSON"),
    (b'{"a": 1}\n"just a string"\n', "not a JSON object"),
    (b'{"a": 1}\n{"a": "\xff"}\n', "not UTF-8"),
])
def test_first_bad_line_is_named(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(EvalError, match=message) as err:
        read_jsonl_objects(path, error=EvalError)
    assert err.value.where == f"{path}:2" and err.value.fix


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="cannot read file") as err:
        read_jsonl_objects(tmp_path / "missing.jsonl")
    assert err.value.where.endswith("missing.jsonl")
