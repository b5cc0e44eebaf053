"""Loading: every format and file type, line numbers, field maps, shipped examples (R10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_rows import alpaca

from tuneloop.data.load import load_records, parse_field_map
from tuneloop.errors import DataError, UsageError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


def test_alpaca_to_messages_with_input_and_system(jsonl):
    path = jsonl([{"instruction": "Add", "input": "2 and 3", "output": "5", "system": "Be brief"},
                  {"instruction": "Hi", "output": "Hello"}])
    res = load_records(path)
    assert res.files[0].format == "alpaca" and not res.rejects
    first, second = res.records
    assert first.messages == [{"role": "system", "content": "Be brief"},
                              {"role": "user", "content": "Add\n\n2 and 3"},
                              {"role": "assistant", "content": "5"}]
    assert second.messages == [{"role": "user", "content": "Hi"},
                               {"role": "assistant", "content": "Hello"}]
    assert (first.source, first.line, second.line) == (str(path), 1, 2)
    assert json.loads(first.raw)["input"] == "2 and 3"
    assert first.meta["has_input"] and not second.meta["has_input"]


def test_sharegpt_prompt_completion_text_and_chat_parts(jsonl):
    sg = jsonl([{"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"},
                                   {"from": "gpt", "value": "A"}]}], "sg.jsonl")
    pc = jsonl([{"prompt": "P", "completion": "C"}], "pc.jsonl")
    tx = jsonl([{"text": "raw text"}], "tx.jsonl")
    parts = jsonl([{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                              {"type": "text", "text": "b"}]},
                                 {"role": "assistant", "content": "c"}]}], "parts.jsonl")
    res = load_records([sg, pc, tx, parts])
    assert [f.format for f in res.files] == ["sharegpt", "prompt_completion", "text", "chat"]
    sgr, pcr, txr, pr = res.records
    assert [m["role"] for m in sgr.messages] == ["system", "user", "assistant"]
    assert pcr.messages[1] == {"role": "assistant", "content": "C"}
    assert txr.text == "raw text" and txr.messages is None
    assert pr.messages[0]["content"] == "ab"


def test_blank_lines_skipped_and_counted_with_physical_line_numbers(jsonl):
    path = jsonl([alpaca(1), "", "   ", alpaca(2)])
    res = load_records(path)
    assert [r.line for r in res.records] == [1, 4]
    assert res.skipped_blank == 2 and res.rows_read == 2


def test_bad_rows_name_file_line_field(jsonl):
    """R10: malformed JSON, non-UTF-8 bytes and wrong types name file, line and field."""
    path = jsonl([alpaca(1), '{"instruction": "x", "output": ', b'{"instruction": "caf\xe9"}',
                  {"instruction": 5, "output": "y"}, {"instruction": "x"}, "[1, 2]",
                  {"messages": "nope", "instruction": "a", "output": "b"}])
    res = load_records(path, format="alpaca")
    assert [r.line for r in res.records] == [1, 7]  # extra keys are ignored
    got = {r.line: (r.issues[0].kind, r.issues[0].field) for r in res.rejects}
    assert got == {2: ("malformed_json", None), 3: ("non_utf8", None),
                   4: ("wrong_type", "instruction"), 5: ("missing_field", "output"),
                   6: ("wrong_type", None)}
    bad = next(r for r in res.rejects if r.line == 3)
    assert "\\xe9" in bad.raw and bad.where == f"{path}:3"
    assert "column" in next(r for r in res.rejects if r.line == 2).issues[0].message


def test_wrong_types_inside_turns(jsonl):
    path = jsonl([{"messages": [{"role": "user", "content": 3}]},
                  {"messages": [{"content": "hi"}]}, {"messages": ["hi"]}])
    res = load_records(path)
    assert [(r.issues[0].kind, r.issues[0].field) for r in res.rejects] == [
        ("wrong_type", "messages[0].content"), ("missing_field", "messages[0].role"),
        ("wrong_type", "messages[0]")]


def test_bom_and_crlf_jsonl(tmp_path):
    path = tmp_path / "win.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(alpaca(1)).encode() + b"\r\n"
                     + json.dumps(alpaca(2)).encode() + b"\r\n")
    res = load_records(path)
    assert [r.line for r in res.records] == [1, 2] and not res.rejects


def test_json_array_lines_are_where_elements_start(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n  {"instruction": "a",\n   "output": "b"},\n\n  {"instruction": "c", '
                    '"output": "d"}\n]\n')
    res = load_records(path)
    assert [r.line for r in res.records] == [2, 5]


def test_broken_json_array_is_a_clear_error(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n{"instruction": "a", "output": "b"},\n{"instruction": \n]')
    with pytest.raises(DataError) as err:
        load_records(path)
    assert f"{path}:4" in err.value.message()


def test_json_file_holding_json_lines(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text(json.dumps(alpaca(1)) + "\n" + json.dumps(alpaca(2)) + "\n")
    assert [r.line for r in load_records(path).records] == [1, 2]


def test_csv_physical_lines_multiline_cells_and_field_map(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_bytes(b'q,a\nfirst,one\n"multi\nline",two\nthird,three\nbad\xff,x\nshort\n')
    res = load_records(path, field_map="q=instruction,a=output")
    assert [(r.line, r.messages[0]["content"]) for r in res.records] == [
        (2, "first"), (3, "multi\nline"), (5, "third")]
    assert [(r.line, r.issues[0].kind) for r in res.rejects] == [(6, "non_utf8"),
                                                                  (7, "wrong_columns")]


def test_parquet_and_saved_dataset(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [alpaca(i) for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    ds_dir = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                          "test": datasets.Dataset.from_list(rows[:1])}).save_to_disk(str(ds_dir))
    res = load_records([tmp_path / "d.parquet", ds_dir, f"{ds_dir}:test"])
    assert [f.rows for f in res.files] == [3, 3, 1]
    assert [r.line for r in res.records] == [1, 2, 3, 1, 2, 3, 1]
    assert res.records[4].messages[0]["content"] == rows[1]["instruction"]


def test_forced_format_and_undetectable_format(jsonl):
    path = jsonl([{"question": "q", "answer": "a"}])
    with pytest.raises(DataError) as err:
        load_records(path)
    assert "--field-map" in err.value.message() and "question" in err.value.message()
    res = load_records(path, field_map={"question": "prompt", "answer": "completion"})
    assert res.records[0].messages[0]["content"] == "q"
    forced = load_records(path, format="text")
    assert forced.rejects[0].issues[0].kind == "missing_field"


def test_usage_errors():
    with pytest.raises(UsageError):
        parse_field_map("question")
    with pytest.raises(UsageError):
        load_records("missing-file.jsonl")
    with pytest.raises(UsageError):
        load_records("x.jsonl", format="nope")


@pytest.mark.parametrize("name,kw,n", [
    ("alpaca.jsonl", {}, 6), ("chat.jsonl", {}, 4), ("sharegpt.json", {}, 3),
    ("qa.csv", {"field_map": "question=instruction,context=input,answer=output"}, 4)])
def test_shipped_examples_load_clean(name, kw, n):
    """Every shipped example file loads and validates with no rejected row."""
    from tuneloop.data.check import check_files

    report = check_files(EXAMPLES / name, **kw)
    assert (len(report.kept), report.rejected) == (n, [])


def test_every_shipped_example_is_covered():
    shipped = {p.name for p in EXAMPLES.iterdir()}
    assert shipped == {"alpaca.jsonl", "chat.jsonl", "sharegpt.json", "qa.csv"}


def test_hub_id_unreachable_is_a_clean_data_error(monkeypatch):
    """A hub id goes through datasets.load_dataset; offline, the failure is one clear message."""
    import datasets
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError) as err:
        load_records("someone/no-such-dataset:validation")
    assert err.value.where == "someone/no-such-dataset:validation"
    assert "cannot load hub dataset 'someone/no-such-dataset'" in err.value.message()
