"""The review database: named migrations, restarts, another tool's file, append-only history."""

from __future__ import annotations

import sqlite3

import pytest
from reviewhelp import write_round

from tuneloop.index import applied_migrations
from tuneloop.review.items import read_inputs
from tuneloop.review.server import prepare
from tuneloop.review.store import MIGRATIONS, ReviewDBError, ReviewStore


def test_migrations_are_recorded_and_a_restart_finds_the_same_items_and_saves(tmp_path):
    """The schema comes from the named migrations; item ids come from content, so serving the
    same files again shows the saved reviews; case_chunks absent means no chunk (shown "—")."""
    files = write_round(tmp_path / "loop", chunks=None)
    db = tmp_path / "review.sqlite"
    store, inputs = prepare(files["result"], db, rows=files["rows"], targets=files["targets"])
    assert applied_migrations(store.db) == [fn.__name__ for fn in MIGRATIONS] == ["r001_initial"]
    assert [c.data["chunk"] for c in inputs.cases] == [None, None]
    assert inputs.rows[0].data["chunk"] == {"key": "handbook.md#3", "text": ""}
    store.save(inputs.cases[0].id, "Ada", "written", "q?", "a.")
    store.close()

    again, inputs2 = prepare(files["result"], db, rows=files["rows"], targets=files["targets"])
    assert [i.id for i in inputs2.cases] == [i.id for i in inputs.cases]
    [review] = again.reviews("Ada")
    assert (review.item_id, review.question) == (inputs.cases[0].id, "q?")
    again.close()


def test_identical_generated_rows_are_one_item_and_counted(tmp_path):
    """Two identical rows in train.jsonl are one item to review (and one exported row); the
    count is kept so the serve command can say so."""
    from reviewhelp import ROWS

    files = write_round(tmp_path / "loop", rows=[ROWS[0], ROWS[1], ROWS[0]])
    inputs = read_inputs(files["result"], files["rows"], files["targets"])
    assert len(inputs.rows) == 2 and inputs.duplicate_rows == 1


def test_another_tools_sqlite_file_is_refused(tmp_path):
    """An arena database (or any file with other migrations) is not taken as a review db."""
    from tuneloop.arena.store import ArenaStore

    arena = tmp_path / "arena.sqlite"
    ArenaStore(arena).close()
    with pytest.raises(ReviewDBError, match="not a review database"):
        ReviewStore(arena)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ReviewDBError, match="review database: file is not a database"):
        ReviewStore(junk)


def test_replaced_saves_cannot_be_rewritten(tmp_path):
    """The history of replaced saves is append-only (sqlite triggers refuse UPDATE/DELETE)."""
    files = write_round(tmp_path / "loop")
    store, inputs = prepare(files["result"], tmp_path / "review.sqlite", rows=files["rows"])
    row = inputs.rows[0].id
    store.save(row, "Ada", "accepted")
    assert store.save(row, "Ada", "rejected")[1] is True
    assert store.replaced_count() == 1
    for sql in ("UPDATE replaced SET action = 'edited'", "DELETE FROM replaced"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.db.execute(sql)
    store.close()


def test_targets_written_for_another_result_is_said(tmp_path):
    """targets.json naming another result than --result gives a note (the chunks shown may
    belong to another round); a compare.json is refused with the fix."""
    from tuneloop.errors import DataError

    files = write_round(tmp_path / "loop")
    other = tmp_path / "other" / "cases.jsonl"
    other.parent.mkdir()
    other.write_bytes(files["result"].read_bytes())
    assert read_inputs(files["result"], targets=files["targets"]).notes == []
    [note] = read_inputs(other, targets=files["targets"]).notes
    assert f"was written for {files['result']}, not {other}" in note
    compare = tmp_path / "compare.json"
    compare.write_text("{}", encoding="utf-8")
    with pytest.raises(DataError, match="a comparison, not one suite result"):
        read_inputs(compare)
