"""Raw .txt / .md files are continued-pretraining data: one `text` record per file, read by the
loader and by `tuneloop data check --format text`; an unsupported file type fails at load,
before any model is loaded."""

from __future__ import annotations

import json

import pytest

from tuneloop.cli import main
from tuneloop.data.load import load_records
from tuneloop.errors import UsageError


@pytest.fixture
def notes(tmp_path):
    path = tmp_path / "notes.md"
    lines = ["# Harbour notes", ""] + [f"Line {i}: the ferry leaves pier {i % 7} at dawn."
                                       for i in range(198)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert len(path.read_text().splitlines()) == 200
    return path


def test_a_200_line_markdown_file_is_one_text_record(notes, tmp_path):
    txt = tmp_path / "more.txt"
    txt.write_bytes(b"\xef\xbb\xbfPlain text, second document.\n")
    for fmt in (None, "text"):
        loaded = load_records([notes, txt], format=fmt)
        assert not loaded.rejects
        assert [f.format for f in loaded.files] == ["text", "text"]
        first, second = loaded.records
        assert first.messages is None and first.text == notes.read_text(encoding="utf-8")
        assert first.where == f"{notes}:1" and first.text.count("\n") == 200  # nothing cut
        assert second.text == "Plain text, second document.\n"  # the BOM is not text


def test_data_check_format_text_reads_raw_files(notes, tmp_path, capsys):
    out = tmp_path / "clean.jsonl"
    assert main(["data", "check", str(notes), "--format", "text", "--json",
                 "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows_read"] == 1 and report["kept"] == 1
    [row] = [json.loads(x) for x in out.read_text().splitlines()]
    assert row["text"] == notes.read_text(encoding="utf-8")


def test_unsupported_types_fail_cleanly_before_the_model_loads(tmp_path, capsys):
    docx = tmp_path / "handbook.docx"
    docx.write_bytes(b"PK\x03\x04 not a text file")
    with pytest.raises(UsageError) as info:
        load_records([docx])
    assert info.value.where == str(docx) and ".docx" in info.value.what
    assert ".txt/.md" in info.value.fix
    # --model names a model that cannot load: the file type is what is reported, first
    code = main(["data", "check", str(docx), "--model", str(tmp_path / "no-model")])
    err = capsys.readouterr().err
    assert code == 2 and "unsupported file type '.docx'" in err and "no-model" not in err
    assert "Traceback" not in err


def test_a_raw_text_file_is_not_rows_of_another_format(notes, capsys):
    with pytest.raises(UsageError, match="raw text"):
        load_records([notes], format="alpaca")
    assert main(["data", "check", str(notes), "--format", "chat"]) == 2
    assert "format: text" in capsys.readouterr().err
