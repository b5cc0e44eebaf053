"""The check pipeline: every row ends in exactly one of clean/rejected, reasons and stats (R11-R13)."""

from __future__ import annotations

import json

from data_rows import alpaca

from tuneloop.data.check import CheckOptions, check_files, load_clean_records
from tuneloop.data.load import load_records
from tuneloop.data.render import Renderer
from tuneloop.errors import DataError


def test_every_row_ends_in_exactly_one_output_with_reasons(jsonl, tmp_path):
    """R11/R12: rejected rows keep original text, file:line and reasons; clean+rejects = input."""
    rows = [alpaca(1), alpaca(2), "{oops", alpaca(1, output="  "), "",
            {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]},
            alpaca(3), {"instruction": "EXPLAIN topic number 3  in simple words for a beginner",
                        "output": "topic 3 is about item3 and how it relates to thing21."},
            alpaca(4, output="mail me at jo@example.com")]
    path = jsonl(rows)
    report = check_files(path, options=CheckOptions())
    out, rej = tmp_path / "clean.jsonl", tmp_path / "rejects.jsonl"
    assert report.write_clean(out) == 3 and report.write_rejects(rej) == 5
    assert report.rows_read == 8 and report.skipped_blank == 1
    assert [r.line for r in report.kept] == [1, 2, 7]
    rejected = [json.loads(x) for x in rej.read_text().splitlines()]
    assert [(r["line"], [i["kind"] for i in r["reasons"]]) for r in rejected] == [
        (3, ["malformed_json"]), (4, ["empty_content"]), (6, ["missing_field"]),
        (8, ["exact_duplicate"]), (9, ["pii"])]  # line 6: a chat row in an alpaca file
    assert rejected[0]["raw"] == "{oops" and rejected[0]["source"] == str(path)
    assert f"{path}:7" in rejected[3]["reasons"][0]["message"]
    assert report.reasons["exact_duplicate"] == 1 and report.exact_dup_clusters == 1
    assert report.examples["pii"][0]["where"] == f"{path}:9"
    clean = [json.loads(x) for x in out.read_text().splitlines()]
    assert clean[0]["messages"][1]["content"] == alpaca(1)["output"]


def test_near_duplicate_rejected_naming_the_kept_row(jsonl):
    long = " ".join(f"w{i}" for i in range(80))
    path = jsonl([alpaca(1, output=long), alpaca(2),
                  alpaca(1, output=long.replace("w40", "changed"))])
    report = check_files(path)
    assert [r.line for r in report.rejected] == [3]
    msg = report.rejected[0].issues[0].message
    assert report.rejected[0].issues[0].kind == "near_duplicate" and f"{path}:1" in msg
    assert report.near_dup_clusters == 1 and report.largest_cluster == 2
    off = check_files(path, options=CheckOptions(near_dup=False))
    assert off.rejected == []


def test_redact_pii_keeps_rows_with_placeholders(jsonl):
    path = jsonl([alpaca(1, input="call 555-123-4567 or mail a@b.io")])
    report = check_files(path, options=CheckOptions(redact_pii=True))
    assert report.rejected == [] and report.pii_redacted
    assert "[PHONE]" in report.kept[0].messages[0]["content"]
    assert "[EMAIL]" in report.kept[0].messages[0]["content"]
    assert report.pii_found == {"phone": 1, "email": 1}


def test_token_lengths_and_max_length_never_cut_the_answer(jsonl, tiny_tokenizer):
    """R13: a row whose answer would be cut by --max-length is rejected, not trained on."""
    long_answer = "the sea is wide and blue and deep " * 12
    long_prompt = "Summarise the meeting notes in two sentences. " * 10
    path = jsonl([alpaca(1), {"instruction": "Q", "output": long_answer},
                  {"instruction": long_prompt, "output": "ok"}])
    opts = CheckOptions(tokenizer=tiny_tokenizer, max_length=100)
    report = check_files(path, options=opts)
    assert [(r.line, r.issues[0].kind) for r in report.rejected] == [(2, "too_long")]
    assert "answer would be cut" in report.rejected[0].issues[0].message
    assert report.prompt_truncated == 1  # the long prompt is shortened, its answer kept
    t = report.token_lengths
    # lengths are of the full, uncut rendering of every valid row (nearest-rank percentiles)
    renderer = Renderer(tiny_tokenizer)
    full = sorted(len(renderer.render(r).example.input_ids) for r in load_records(path).records)
    assert t == {"p50": full[1], "p95": full[2], "max": full[2]} and t["max"] > 100


def test_summary_numbers_and_json(jsonl):
    path = jsonl([alpaca(1, input="ctx"), alpaca(2), {"instruction": "Write a poem",
                                                       "output": "Roses"}])
    data = check_files(path).to_json()
    assert data["rows_read"] == 3 and data["kept"] == 3
    assert abs(data["share_with_input"] - 1 / 3) < 1e-9
    assert list(data["first_words"][0]) == ["explain", 2]
    json.dumps(data)  # serialisable as-is


def test_load_clean_records_raises_when_nothing_usable(jsonl, caplog):
    """R11: all rows rejected → fail before training with a message naming the reasons."""
    good = jsonl([alpaca(1), alpaca(1), "{"], "good.jsonl")
    assert [r.line for r in load_clean_records([good])] == [1, 2]  # validation only
    assert "1 of 3 rows rejected (malformed_json ×1)" in caplog.text
    assert [r.line for r in load_clean_records([good], exact_dup=True)] == [1]
    bad = jsonl(["{", alpaca(1, output="")], "bad.jsonl")
    try:
        load_clean_records(bad)
    except DataError as exc:
        assert "no usable rows" in exc.message() and "malformed_json" in exc.message()
    else:
        raise AssertionError("expected DataError")
