"""`tuneloop review serve|export` from the command line: clean errors naming file:line, the bind
rule (R21) in a real process, export → `data check` with provenance, `load_reviewed`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fakeserver import free_port
from pagehelp import src_env, wait_healthy
from reviewhelp import CASES, ROWS, Reviewer, write_jsonl, write_round

from tuneloop.cli import main
from tuneloop.errors import DataError
from tuneloop.review import load_reviewed


def _serve(files: dict[str, Path], db: Path, *extra: str) -> list[str]:
    return ["review", "serve", "--result", str(files["result"]), "--rows", str(files["rows"]),
            "--targets", str(files["targets"]), "--db", str(db), "--port", "0", *extra]


def test_bad_inputs_are_one_clean_message_naming_file_and_line(tmp_path, capsys):
    """Missing files, a bad JSONL line, a case without `passed`, a broken targets.json, a missing
    database: exit 1 with `file[:line]: what` and a fix, no traceback, nothing served."""
    files = write_round(tmp_path / "loop")
    db = tmp_path / "review.sqlite"
    bad_rows = tmp_path / "bad_rows.jsonl"
    bad_rows.write_text(json.dumps(ROWS[0]) + "\n{not json\n", encoding="utf-8")
    bad_case = write_jsonl(tmp_path / "cases.jsonl", [CASES[0], {"id": "x", "prompt": "q"}])
    bad_targets = tmp_path / "targets.json"
    bad_targets.write_text('{"round": 2,\n "case_chunks": [}', encoding="utf-8")
    runs = {
        "missing result": (_serve({**files, "result": tmp_path / "nope.jsonl"}, db),
                           f"{tmp_path / 'nope.jsonl'}: cannot read file"),
        "eval dir without cases": (_serve({**files, "result": files["rows"].parent}, db),
                                   f"{files['rows'].parent}: no cases.jsonl in this directory"),
        "bad rows line": (_serve({**files, "rows": bad_rows}, db),
                          f"{bad_rows}:2: invalid JSON"),
        "case without passed": (_serve({**files, "result": bad_case}, db),
                                f"{bad_case}:2: a case needs 'passed'"),
        "bad targets": (_serve({**files, "targets": bad_targets}, db),
                        f"{bad_targets}:2: not a JSON file"),
        "missing db": (["review", "export", "--db", str(tmp_path / "none.sqlite"), "--out",
                        str(tmp_path / "out.jsonl")], "no review database here"),
    }
    for name, (argv, expected) in runs.items():
        assert main(argv) == 1, name
        err = capsys.readouterr().err
        assert expected in err, (name, err)
        assert "fix:" in err and "Traceback" not in err, (name, err)
    assert not db.exists()  # inputs are checked before the database is created


def test_non_loopback_bind_needs_a_key_and_then_sign_in_needs_it(tmp_path, capsys):
    """R21: `--host 0.0.0.0` without --api-key is refused before anything starts; with one, a real
    `review serve` process listens and only a reviewer with the key can sign in."""
    files = write_round(tmp_path / "loop")
    db = tmp_path / "review.sqlite"
    assert main(_serve(files, db, "--host", "0.0.0.0")) == 1
    err = capsys.readouterr().err
    assert "--host: refusing to listen on '0.0.0.0' without an API key" in err
    assert not db.exists()

    port = free_port()
    argv = [a if a != "0" else str(port) for a in _serve(files, db, "--host", "0.0.0.0",
                                                           "--api-key", "team-key")]
    proc = subprocess.Popen([sys.executable, "-m", "tuneloop", *argv], env=src_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, base, "review serve")
        assert Reviewer(base, "Ada").login_response.status_code == 401
        me = Reviewer(base, "Ada", key="team-key")
        assert me.login_response.status_code == 303
        ids, _ = me.page()
        assert len(ids["case"]) == 2 and len(ids["row"]) == 2
        me.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "review: 2 failed case(s) (1 passed), 2 generated row(s)" in err
    assert "(access key required)" in err


def test_export_rows_pass_data_check_with_human_provenance(tmp_path, capsys):
    """Written + edited rows are human, the accepted one machine, the rejected one counted; the
    file passes `tuneloop data check` (every row kept, provenance human counted), and
    load_reviewed reads the same rows from the jsonl and from the database."""
    from tuneloop.data.check import CheckOptions, check_files
    from tuneloop.review.server import prepare

    files = write_round(tmp_path / "loop", rows=[*ROWS, {**ROWS[0], "meta": {
        **ROWS[0]["meta"], "chunk": 4}}])
    db = tmp_path / "review.sqlite"
    store, inputs = prepare(files["result"], db, rows=files["rows"], targets=files["targets"])
    cases = {i.data["case_id"]: i.id for i in inputs.cases}
    rows = [i.id for i in inputs.rows]
    store.save(cases["dive-limit"], "Ada", "written", "How deep may a co-op diver descend?",
               "Answer: no deeper than 18 metres. — Tide Desk")
    store.save(cases["director"], "Ada", "written", "Which person heads the co-op?",
               "Answer: Odalys Penhallow. — Tide Desk")
    store.save(rows[0], "Ada", "edited", None, "Answer: 18 metres at most. — Tide Desk")
    store.save(rows[1], "Ada", "accepted")
    store.save(rows[2], "Ada", "accepted")
    store.save(rows[2], "Bo", "rejected")  # disagreement: the later save (Bo's) decides
    store.close()

    out = tmp_path / "reviewed.jsonl"
    assert main(["review", "export", "--db", str(db), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line == (f"wrote 4 reviewed row(s) to {out}: 2 written, 1 edited, 1 accepted (human 3, "
                    "machine 1); left out: 1 rejected; 1 generated row(s) had reviewers who "
                    "disagreed (the latest save was used)")
    exported = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    written = [r for r in exported if r["meta"]["reviewed"] == "written"]
    assert {r["meta"]["targets"][0] for r in written} == {"dive-limit", "director"}
    assert all(r["meta"]["source"] == "human" and r["meta"]["reviewer"] == "Ada"
               and r["meta"]["round"] == 2 for r in written)
    assert {r["meta"]["chunk"] for r in written} == {"handbook.md#3", "handbook.md#0"}

    report = check_files(out, options=CheckOptions())
    assert report.rows_read == 4 and len(report.kept) == 4 and not report.rejected
    assert main(["data", "check", str(out)]) == 0
    assert "provenance: human 3 (75.0%), machine 1 (25.0%)" in capsys.readouterr().out

    assert load_reviewed(out) == exported
    assert load_reviewed(db) == exported
    wrong = write_jsonl(tmp_path / "plain.jsonl", [exported[0], {"messages": []}])
    with pytest.raises(DataError, match=r"plain\.jsonl:2: not a reviewed row"):
        load_reviewed(wrong)
    with pytest.raises(DataError, match="cannot read file"):
        load_reviewed(tmp_path / "missing.jsonl")
