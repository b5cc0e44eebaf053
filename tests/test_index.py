"""The run/eval index: named append-only migrations, upserts, the suite-score join, concurrency."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tuneloop import index
from tuneloop.errors import TuneloopError


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def _run_kwargs(**over):
    kw = {
        "name": "lora-a",
        "model": "smollm2-135m-instruct",
        "method": "lora",
        "data_fingerprint": "sha256:abc123",
        "steps": 50,
        "best_eval_loss": 1.25,
        "status": "completed",
        "config": {"train": {"lr": 2e-4, "epochs": 1}, "out": Path("/x")},
    }
    kw.update(over)
    return kw


def test_fresh_db_gets_every_migration_in_order_wal_and_default_path(tmp_path, monkeypatch):
    """A fresh index lives at <TUNELOOP_HOME>/index.sqlite, parents created, all migrations, WAL."""
    home = tmp_path / "deep" / "home"
    monkeypatch.setenv("TUNELOOP_HOME", str(home))
    db = index.open_index()
    try:
        assert (home / "index.sqlite").is_file()
        names = [fn.__name__ for fn in index.MIGRATIONS]
        assert len(names) == len(set(names)) >= 3
        assert index.applied_migrations(db) == names
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert {"variant", "checkpoint", "extra_json"} <= set(_columns(db, "evals"))
    finally:
        db.close()


def test_db_at_migration_1_upgrades_without_losing_rows(tmp_path):
    """A DB created by the first migration only keeps its rows when later migrations run."""
    path = tmp_path / "old.sqlite"
    db = index.connect(path)
    assert index.migrate(db, upto=1) == ["m001_initial"]
    assert "variant" not in _columns(db, "evals")
    # Rows as the version-1 code wrote them.
    db.execute(
        "INSERT INTO runs (run_dir, name, model, method, data_fingerprint, steps, best_eval_loss,"
        " status, config_json, created_at, updated_at)"
        " VALUES ('/r/old', 'old', 'm', 'full', 'fp', 7, 2.5, 'completed', '{\"a\": 1}',"
        " '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')"
    )
    db.execute(
        "INSERT INTO evals (run_dir, model_ref, kind, name, score, n, details_path, created_at)"
        " VALUES ('/r/old', 'm', 'suite', 'smoke', 0.5, 10, NULL, '2026-01-01T00:00:01+00:00')"
    )
    db.close()

    db = index.open_index(path)
    try:
        assert index.applied_migrations(db) == [fn.__name__ for fn in index.MIGRATIONS]
        runs = index.list_runs(index=db)
        assert len(runs) == 1
        run = runs[0]
        assert (run["run_dir"], run["steps"], run["best_eval_loss"]) == ("/r/old", 7, 2.5)
        assert run["config"] == {"a": 1}
        assert run["latest_suite_score"] == 0.5
        (ev,) = index.list_evals(index=db)
        assert (ev["name"], ev["score"], ev["n"]) == ("smoke", 0.5, 10)
        assert ev["variant"] is None and ev["checkpoint"] is None and ev["extra"] is None
        # The new columns are usable after the upgrade.
        index.record_eval(
            model_ref="m", kind="suite", name="smoke", score=0.75, n=10, run_dir="/r/old",
            variant="tuned", checkpoint="step-000050", extra={"flips": 2}, index=db,
        )
        assert index.list_runs(index=db)[0]["latest_suite_score"] == 0.75
    finally:
        db.close()


def test_rerunning_migrations_is_a_noop(tmp_path):
    """Opening a migrated index again applies nothing and changes no row."""
    path = tmp_path / "i.sqlite"
    index.record_run(tmp_path / "run", index=path, **_run_kwargs())
    db = index.open_index(path)
    before = db.execute("SELECT name, applied_at FROM _migrations").fetchall()
    assert index.migrate(db) == []
    after = db.execute("SELECT name, applied_at FROM _migrations").fetchall()
    assert [tuple(r) for r in before] == [tuple(r) for r in after]
    assert len(index.list_runs(index=db)) == 1
    db.close()


def test_record_run_upserts_by_absolute_dir(tmp_path, monkeypatch):
    """The same run dir (relative or absolute) is one row; the update keeps created_at."""
    monkeypatch.setenv("TUNELOOP_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "a").mkdir(parents=True)
    index.record_run("runs/a", **_run_kwargs(status="running", steps=10, best_eval_loss=None))
    first = index.list_runs()[0]
    index.record_run(tmp_path / "runs" / "a", **_run_kwargs(steps=50))
    runs = index.list_runs()
    assert len(runs) == 1
    run = runs[0]
    assert run["run_dir"] == str((tmp_path / "runs" / "a").resolve())
    assert (run["status"], run["steps"], run["best_eval_loss"]) == ("completed", 50, 1.25)
    assert run["created_at"] == first["created_at"]
    assert run["updated_at"] >= first["updated_at"]
    assert run["config"] == {"train": {"lr": 2e-4, "epochs": 1}, "out": "/x"}
    assert run["latest_suite_score"] is None


def test_evals_are_append_only_and_latest_suite_is_joined(tmp_path):
    """Every record_eval adds a row; list_runs shows the latest *suite* score of each run."""
    path = tmp_path / "i.sqlite"
    a, b = tmp_path / "a", tmp_path / "b"
    index.record_run(a, index=path, **_run_kwargs(name="a"))
    index.record_run(b, index=path, **_run_kwargs(name="b"))
    index.record_eval(model_ref=str(a), kind="suite", name="s", score=0.4, n=5, run_dir=a,
                      index=path)
    index.record_eval(model_ref=str(a), kind="suite", name="s", score=0.6, n=5, run_dir=a,
                      index=path, details_path=tmp_path / "cases.jsonl")
    index.record_eval(model_ref=str(a), kind="loss", name="heldout", score=9.0, n=5, run_dir=a,
                      index=path)
    index.record_eval(model_ref="base", kind="judge", name="j", score=0.1, n=3, index=path)
    by_name = {r["name"]: r for r in index.list_runs(index=path)}
    assert by_name["a"]["latest_suite_score"] == 0.6  # not the later loss row
    assert by_name["b"]["latest_suite_score"] is None
    assert len(index.list_evals(index=path)) == 4
    mine = index.list_evals(a, index=path)
    assert [e["score"] for e in mine] == [0.4, 0.6, 9.0]
    assert mine[1]["details_path"] == str((tmp_path / "cases.jsonl").resolve())


def test_bad_kind_and_broken_file_are_clear_errors(tmp_path):
    """An unknown eval kind or a non-sqlite index file is a TuneloopError naming what and the fix."""
    with pytest.raises(TuneloopError, match="unknown evaluation kind 'bleu'") as exc:
        index.record_eval(model_ref="m", kind="bleu", name="x", score=1, n=1,
                          index=tmp_path / "i.sqlite")
    assert "suite" in exc.value.fix
    bad = tmp_path / "broken.sqlite"
    bad.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(TuneloopError) as exc:
        index.open_index(bad)
    assert str(bad) in exc.value.message() and exc.value.fix


_WRITER = textwrap.dedent(
    """
    import sys
    from tuneloop import index
    who, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        index.record_eval(model_ref=who, kind="suite", name=f"{who}-{i}", score=i, n=1)
        if i % 10 == 0:
            index.record_run(f"/runs/{who}", name=who, model="m", method="lora",
                             data_fingerprint="fp", steps=i, best_eval_loss=None,
                             status="running", config={})
    """
)


def test_two_processes_writing_at_once_lose_no_rows(tmp_path):
    """Two processes racing on a fresh index (migrations included) keep every row (WAL + busy)."""
    env = dict(os.environ, TUNELOOP_HOME=str(tmp_path / "home"))
    n = 150
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, who, str(n)], env=env,
                         stderr=subprocess.PIPE, text=True)
        for who in ("p1", "p2")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    db = index.open_index(tmp_path / "home" / "index.sqlite")
    try:
        evals = index.list_evals(index=db)
        assert len(evals) == 2 * n
        for who in ("p1", "p2"):
            assert {e["name"] for e in evals if e["model_ref"] == who} == {
                f"{who}-{i}" for i in range(n)
            }
        assert {r["name"] for r in index.list_runs(index=db)} == {"p1", "p2"}
        names = [fn.__name__ for fn in index.MIGRATIONS]
        assert index.applied_migrations(db) == names  # each applied once, not twice
    finally:
        db.close()


def test_a_lock_held_too_long_is_a_clear_error(tmp_path, monkeypatch):
    """Another process holding the write lock past the timeout gives a message, not a traceback."""
    path = tmp_path / "i.sqlite"
    index.open_index(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr(index, "BUSY_TIMEOUT_S", 0.3)
    try:
        with pytest.raises(TuneloopError, match="stayed locked") as exc:
            index.record_eval(model_ref="m", kind="suite", name="s", score=1, n=1, index=path)
        assert str(path) in exc.value.message() and "another tuneloop process" in exc.value.fix
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    index.record_eval(model_ref="m", kind="suite", name="s", score=1, n=1, index=path)
    assert len(index.list_evals(index=path)) == 1
