"""The rounds migration (m004_loop_rounds) and the grouping of failures, on real sqlite."""

from __future__ import annotations

import pytest

from tuneloop import index
from tuneloop.iterate import Failure, group_failures, target_chunks
from tuneloop.synth.docs import chunk_text


def test_index_at_migration_3_gains_rounds_without_losing_rows(tmp_path):
    """An index made before rounds existed keeps its runs/evals and gains the rounds table."""
    path = tmp_path / "old.sqlite"
    db = index.connect(path)
    assert index.migrate(db, upto=3)[-1] == "m003_eval_lookup_indexes"
    db.execute("INSERT INTO evals (run_dir, model_ref, kind, name, score, n, created_at)"
               " VALUES ('/r', 'm', 'suite', 's', 0.5, 4, '2026-01-01T00:00:00+00:00')")
    assert not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'rounds'").fetchone()
    db.close()

    db = index.open_index(path)
    try:
        assert "m004_loop_rounds" in index.applied_migrations(db)
        assert len(index.list_evals(index=db)) == 1
        first = index.record_round(tmp_path / "loop", 1, parent_id=None, eval_path="r1.jsonl",
                                   data_paths=["a.jsonl"], pass_rate=0.25, n_cases=4, index=db)
        second = index.record_round(tmp_path / "loop", 2, parent_id=first, eval_path="r2.jsonl",
                                    data_paths=["a.jsonl", "b.jsonl"], pass_rate=0.5, n_cases=4,
                                    run_dir=tmp_path / "run", extra={"new_rows": 3}, index=db)
        rounds = index.list_rounds(tmp_path / "loop", index=db)
        assert [(r["round"], r["parent_id"]) for r in rounds] == [(1, None), (2, first)]
        assert rounds[1]["id"] == second and rounds[1]["extra"] == {"new_rows": 3}
        assert index.list_rounds(tmp_path / "other", index=db) == []
        # a round is recorded once; a parent must belong to the same loop
        with pytest.raises(index.IndexDBError, match="already recorded"):
            index.record_round(tmp_path / "loop", 2, parent_id=first, eval_path="x",
                               data_paths=[], pass_rate=None, n_cases=None, index=db)
        with pytest.raises(index.IndexDBError, match="not a round of this loop"):
            index.record_round(tmp_path / "other", 2, parent_id=first, eval_path="x",
                               data_paths=[], pass_rate=None, n_cases=None, index=db)
    finally:
        db.close()


def _f(cid: str, q: str, tags=("t",), checks=("icontains",), values=()) -> Failure:
    return Failure(id=cid, question=q, tags=list(tags), failed_checks=list(checks), output="",
                   values=list(values))


def test_index_at_migration_4_gains_round_verdicts_and_keeps_its_rounds(tmp_path):
    """m005_round_verdicts: rounds recorded before it keep their rows (verdict unknown: NULL);
    rounds after it carry fixed/broken/p/verdict."""
    path = tmp_path / "old.sqlite"
    db = index.connect(path)
    assert index.migrate(db, upto=4)[-1] == "m004_loop_rounds"
    db.execute("INSERT INTO rounds (loop, round, eval_path, data_json, pass_rate, n_cases, "
               "created_at) VALUES (?, 1, 'r1.jsonl', '[]', 0.5, 4, '2026-01-01T00:00:00+00:00')",
               (str((tmp_path / "loop").resolve()),))
    db.commit()
    db.close()
    db = index.open_index(path)
    try:
        assert "m005_round_verdicts" in index.applied_migrations(db)
        [old] = index.list_rounds(tmp_path / "loop", index=db)
        assert old["verdict"] is None and old["pass_rate"] == 0.5
        index.record_round(tmp_path / "loop", 2, parent_id=old["id"], eval_path="r2.jsonl",
                           data_paths=[], pass_rate=0.25, n_cases=4, n_fixed=0, n_broken=1,
                           p_value=1.0, verdict="regression", index=db)
        new = index.list_rounds(tmp_path / "loop", index=db)[1]
        assert (new["n_fixed"], new["n_broken"], new["p_value"], new["verdict"]) == (
            0, 1, 1.0, "regression")
    finally:
        db.close()


def test_failures_group_by_what_failed_then_by_question_similarity():
    """Same checks and tags but unrelated questions are separate groups; similar ones join."""
    failures = [
        _f("a", "What time does the Gullwing ferry leave pier 4?"),
        _f("b", "When does the Gullwing ferry leave from pier 4 on Sundays?"),
        _f("c", "Which radio channel is for distress calls?"),
        _f("d", "What time does the Gullwing ferry leave pier 4?", checks=("starts-with",)),
    ]
    groups = group_failures(failures)
    assert sorted(sorted(f.id for f in g.cases) for g in groups) == [["a", "b"], ["c"], ["d"]]
    ab = next(g for g in groups if len(g.cases) == 2)
    assert {"gullwing", "ferry", "pier"} <= set(ab.topics)


def test_targeting_prefers_the_chunk_stating_the_checked_value():
    """The chunk holding the value a failed check looks for is chosen, not a wordier neighbour."""
    text = ("# A\n\nThe ferry schedule changes often and the ferry office posts ferry news on the "
            "board by the ferry slipway every single morning.\n\n"
            "# B\n\nThe boat shed code is 4471.\n\n# C\n\nLunch is at noon.\n")
    chunks = chunk_text(text, "doc.md", chunk_words=20, overlap=2)
    assert len(chunks) >= 2
    picked, _, counts = target_chunks(chunks, [_f("x", "Which digits open the ferry boat shed?",
                                                values=["4471"])])
    assert len(picked) == 1 and "4471" in picked[0].text and "ferry office" not in picked[0].text
    assert list(counts.values()) == [1]
