"""Preference pairs (DPO data): loading both hub shapes and the arena export, and `data check`
rejecting broken pairs with file:line while clean + rejected = input (R11, R12)."""

from __future__ import annotations

import json

from tuneloop.data.check import CheckOptions, check_files
from tuneloop.data.load import detect_format, load_records


def pair(i: int, **over) -> dict:
    row = {"prompt": f"Name colour number {i}.", "chosen": f"Colour {i} is blue.",
           "rejected": f"I will not say {i}.", "chosen_model": "a", "rejected_model": "b",
           "vote_id": i}
    row.update(over)
    return row


def test_both_hub_shapes_and_the_arena_export_load_as_pairs(jsonl):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    rows = [pair(1),
            pair(2, prompt=msgs, chosen=[{"role": "assistant", "content": "Hello."}],
                 rejected=[{"role": "assistant", "content": "Go away."}])]
    assert detect_format(rows) == "preference"
    loaded = load_records(jsonl(rows))
    assert not loaded.rejects and loaded.files[0].format == "preference"
    first, second = loaded.records
    assert first.messages == [{"role": "user", "content": "Name colour number 1."},
                              {"role": "assistant", "content": "Colour 1 is blue."}]
    assert first.rejected == "I will not say 1."
    assert second.messages[:2] == msgs and second.rejected == "Go away."
    assert second.to_json() == {"prompt": msgs, "chosen": "Hello.", "rejected": "Go away."}


def test_data_check_rejects_broken_pairs_with_file_line(jsonl, tmp_path):
    rows = [pair(1),
            pair(2, rejected=" Colour 2 is blue. "),            # chosen == rejected
            {"prompt": "Name colour 3.", "chosen": "Red."},      # rejected missing
            pair(4, chosen="   "),                                # empty chosen answer
            pair(5, rejected=""),                                 # empty rejected answer
            pair(6, chosen=[{"role": "user", "content": "x"}]),  # not an assistant answer
            {"chosen": "a", "rejected": "b"},                     # prompt missing
            pair(8),
            pair(9, rejected="mail jo@example.com")]              # PII in the rejected side
    path = jsonl(rows)
    report = check_files(path, options=CheckOptions())
    clean, rejects = tmp_path / "clean.jsonl", tmp_path / "rejects.jsonl"
    assert report.write_clean(clean) == 2 and report.write_rejects(rejects) == 7
    assert report.rows_read == 9  # clean + rejected = input
    got = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert [(r["line"], [(i["kind"], i["field"]) for i in r["reasons"]]) for r in got] == [
        (2, [("chosen_equals_rejected", "rejected")]),
        (3, [("missing_field", "rejected")]),
        (4, [("empty_content", "chosen")]),
        (5, [("empty_content", "rejected")]),
        (6, [("wrong_type", "chosen")]),
        (7, [("missing_field", "prompt")]),
        (9, [("pii", "rejected")]),
    ]
    assert all(r["source"] == str(path) for r in got)
    assert got[0]["raw"] == json.dumps(rows[1])  # the original text, as given
    kept = [json.loads(x) for x in clean.read_text().splitlines()]
    assert kept[1] == {"prompt": [{"role": "user", "content": "Name colour number 8."}],
                       "chosen": "Colour 8 is blue.", "rejected": "I will not say 8."}


def test_pairs_differing_only_in_rejected_are_not_duplicates(jsonl):
    rows = [pair(1), pair(1, rejected="Another bad answer."), pair(1)]
    report = check_files(jsonl(rows), options=CheckOptions(near_dup=False, pii=False))
    assert [r.line for r in report.kept] == [1, 2]
    assert report.reasons["exact_duplicate"] == 1


def test_cli_data_check_names_the_bad_pair(jsonl):
    import os
    import subprocess
    import sys

    path = jsonl([pair(1), pair(2, rejected="Colour 2 is blue.")])
    proc = subprocess.run([sys.executable, "-m", "tuneloop", "data", "check", str(path),
                           "--no-near-dup"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False, timeout=120)
    out = proc.stdout + proc.stderr
    assert f"{path}:2" in out and "chosen_equals_rejected" in out, out
