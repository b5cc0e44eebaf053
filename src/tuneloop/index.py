"""The sqlite index of runs and evaluations (`<home>/index.sqlite`).

The schema only grows, through named migrations applied in order and recorded in `_migrations`
(the pattern of simonw/llm's migrations.py): a migration, once shipped, is never edited or
removed; a change is a new function appended to MIGRATIONS. Runs are upserted keyed by their
absolute directory; evaluations are append-only rows.

The index is safe for several processes at once: WAL journal (readers never block the writer) and
a busy timeout (a writer waits for the lock instead of failing), and every write, migrations
included, runs in a `BEGIN IMMEDIATE` transaction so two processes never apply one migration twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tuneloop.errors import TuneloopError
from tuneloop.workspace import workspace_home

EVAL_KINDS = ("suite", "loss", "mc", "judge", "contamination")
# How long a writer waits for another process's lock before giving up (seconds).
BUSY_TIMEOUT_S = 30.0

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


class IndexDBError(TuneloopError):
    """The index file cannot be opened or used (not a sqlite file, unwritable, bad argument)."""


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration; its function name is its permanent id."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    """Runs keyed by directory; evaluations as append-only rows."""
    db.execute(
        """
        CREATE TABLE runs (
            run_dir TEXT PRIMARY KEY,
            name TEXT,
            model TEXT,
            method TEXT,
            data_fingerprint TEXT,
            steps INTEGER,
            best_eval_loss REAL,
            status TEXT,
            config_json TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE evals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_dir TEXT,
            model_ref TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            score REAL,
            n INTEGER,
            details_path TEXT,
            created_at TEXT NOT NULL
        )
        """
    )


@migration
def m002_eval_variant_checkpoint_extra(db: sqlite3.Connection) -> None:
    """Evaluations also say which variant (base/prompted/tuned) and checkpoint, plus free extras."""
    db.execute("ALTER TABLE evals ADD COLUMN variant TEXT")
    db.execute("ALTER TABLE evals ADD COLUMN checkpoint TEXT")
    db.execute("ALTER TABLE evals ADD COLUMN extra_json TEXT")


@migration
def m003_eval_lookup_indexes(db: sqlite3.Connection) -> None:
    """Index the lookups `runs` and the report make: a run's evals, latest first, by kind."""
    db.execute("CREATE INDEX evals_by_run_kind ON evals (run_dir, kind, id)")
    db.execute("CREATE INDEX evals_by_model_ref ON evals (model_ref)")


@migration
def m004_loop_rounds(db: sqlite3.Connection) -> None:
    """Rounds of `tuneloop iterate`: one row per round of a loop, pointing at its parent round."""
    db.execute(
        """
        CREATE TABLE rounds (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            loop TEXT NOT NULL,
            round INTEGER NOT NULL,
            parent_id INTEGER REFERENCES rounds (id),
            run_dir TEXT,
            eval_path TEXT NOT NULL,
            data_json TEXT NOT NULL,
            pass_rate REAL,
            n_cases INTEGER,
            extra_json TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (loop, round)
        )
        """
    )


@migration
def m005_round_verdicts(db: sqlite3.Connection) -> None:
    """A round's verdict against its parent: cases fixed and broken, the exact McNemar p-value,
    and whether it improved, changed nothing or regressed (a regression never becomes the loop's
    current model)."""
    db.execute("ALTER TABLE rounds ADD COLUMN n_fixed INTEGER")
    db.execute("ALTER TABLE rounds ADD COLUMN n_broken INTEGER")
    db.execute("ALTER TABLE rounds ADD COLUMN p_value REAL")
    db.execute("ALTER TABLE rounds ADD COLUMN verdict TEXT")


@migration
def m006_sweep_trials(db: sqlite3.Connection) -> None:
    """Trials of `tuneloop sweep`: one row per trial of a sweep (keyed by the sweep directory),
    pointing at the trial's run; its sampled params, metric value and Optuna state."""
    db.execute(
        """
        CREATE TABLE sweep_trials (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            sweep TEXT NOT NULL,
            trial INTEGER NOT NULL,
            run_dir TEXT,
            params_json TEXT NOT NULL,
            value REAL,
            state TEXT NOT NULL,
            steps INTEGER,
            extra_json TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (sweep, trial)
        )
        """
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _retry_locked(action: Callable[[], Any], db: sqlite3.Connection) -> Any:
    """Run `action`, retrying while the file is locked, for up to BUSY_TIMEOUT_S.

    The busy timeout covers most waits, but SQLite answers some (switching to WAL while another
    connection opens the file, WAL recovery) with an immediate SQLITE_BUSY; those are retried.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc):
                raise
            if time.monotonic() > deadline:
                where = db.execute("PRAGMA database_list").fetchone()[2]
                raise IndexDBError(
                    f"the database stayed locked for {BUSY_TIMEOUT_S:.0f} s ({exc})",
                    where=where or None,
                    fix="another tuneloop process is holding it; wait for it to finish and retry",
                ) from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _set_wal(db: sqlite3.Connection) -> None:
    # SQLite reports a refused switch by returning the old mode, not by raising.
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"database is locked (journal_mode is still {mode})")


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction that takes the write lock up front (no upgrade deadlocks)."""
    _retry_locked(lambda: db.execute("BEGIN IMMEDIATE"), db)
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


_write = write_transaction  # the short name used throughout this module


def applied_migrations(db: sqlite3.Connection) -> list[str]:
    """Names of the migrations recorded in `_migrations`, in the order they were applied."""
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'"
    ).fetchone()
    if not exists:
        return []
    return [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY rowid")]


def migrate(db: sqlite3.Connection, *, upto: int | None = None,
            migrations: list[Migration] | None = None) -> list[str]:
    """Apply pending migrations (the first `upto` of them if given); return the names applied.

    `migrations` defaults to the index's own list; another sqlite store (the arena) passes its
    list to get the same `_migrations` bookkeeping and locking.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    done_names = set(_retry_locked(lambda: applied_migrations(db), db))
    pending = [fn for fn in migrations[:upto] if fn.__name__ not in done_names]
    applied: list[str] = []
    for fn in pending:  # usually empty: opening a current index takes no write lock
        # Re-check inside the locked transaction: another process may have just applied it.
        with _write(db):
            db.execute(
                "CREATE TABLE IF NOT EXISTS _migrations "
                "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            done = db.execute("SELECT 1 FROM _migrations WHERE name = ?", (fn.__name__,))
            if done.fetchone():
                continue
            fn(db)
            db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (fn.__name__, _now())
            )
            applied.append(fn.__name__)
    return applied


def default_index_path() -> Path:
    """`<workspace_home()>/index.sqlite`."""
    return workspace_home() / "index.sqlite"


def open_wal(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open `path` (parents created) in WAL mode with a busy timeout; sqlite/OS errors propagate."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN/COMMIT ourselves (see write_transaction).
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                         check_same_thread=check_same_thread)
    db.row_factory = sqlite3.Row
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    _retry_locked(lambda: _set_wal(db), db)
    return db


def connect(path: str | Path | None = None) -> sqlite3.Connection:
    """Open the index file in WAL mode with a busy timeout, without migrating it."""
    path = Path(path) if path is not None else default_index_path()
    where = str(path)
    try:
        db = open_wal(path)
    except (sqlite3.DatabaseError, OSError) as exc:
        raise IndexDBError(
            f"cannot open the run index: {exc}",
            where=where,
            fix="point TUNELOOP_HOME at a writable workspace, or move the broken file aside "
            "(it is rebuilt empty; run dirs themselves are untouched)",
        ) from exc
    return db


def open_index(path: str | Path | None = None) -> sqlite3.Connection:
    """Open (creating parents) the index at `path` or `<home>/index.sqlite`, migrated, WAL mode."""
    db = connect(path)
    try:
        migrate(db)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise IndexDBError(
            f"cannot migrate the run index: {exc}",
            where=str(path if path is not None else default_index_path()),
            fix="move the file aside and re-run; it is rebuilt empty",
        ) from exc
    return db


@contextmanager
def _using(index: str | Path | sqlite3.Connection | None) -> Iterator[sqlite3.Connection]:
    """Yield a connection: the one given, or a fresh one closed afterwards."""
    if isinstance(index, sqlite3.Connection):
        yield index
        return
    db = open_index(index)
    try:
        yield db
    finally:
        db.close()


def _run_key(run_dir: str | Path) -> str:
    return str(Path(run_dir).resolve())


def _json(value: Any) -> str:
    # default=str: configs hold Paths and enums; the index is for reading, not round-tripping types.
    return json.dumps(value, sort_keys=True, default=str)


def record_run(
    run_dir: str | Path,
    *,
    name: str,
    model: str,
    method: str,
    data_fingerprint: str | None,
    steps: int | None,
    best_eval_loss: float | None,
    status: str,
    config: dict,
    index: str | Path | sqlite3.Connection | None = None,
) -> None:
    """Insert or update the run at the absolute `run_dir` (created_at kept, the rest replaced)."""
    now = _now()
    row = (
        _run_key(run_dir),
        name,
        model,
        method,
        data_fingerprint,
        None if steps is None else int(steps),
        None if best_eval_loss is None else float(best_eval_loss),
        status,
        _json(config or {}),
        now,
        now,
    )
    with _using(index) as db, _write(db):
        db.execute(
            """
            INSERT INTO runs (run_dir, name, model, method, data_fingerprint, steps,
                              best_eval_loss, status, config_json, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (run_dir) DO UPDATE SET
                name = excluded.name, model = excluded.model, method = excluded.method,
                data_fingerprint = excluded.data_fingerprint, steps = excluded.steps,
                best_eval_loss = excluded.best_eval_loss, status = excluded.status,
                config_json = excluded.config_json, updated_at = excluded.updated_at
            """,
            row,
        )


def record_eval(
    *,
    model_ref: str,
    kind: str,
    name: str,
    score: float | None,
    n: int | None,
    details_path: str | Path | None = None,
    run_dir: str | Path | None = None,
    variant: str | None = None,
    checkpoint: str | None = None,
    extra: dict | None = None,
    index: str | Path | sqlite3.Connection | None = None,
) -> int:
    """Append one evaluation row; returns its id. `kind` is one of EVAL_KINDS."""
    if kind not in EVAL_KINDS:
        raise IndexDBError(
            f"unknown evaluation kind {kind!r}",
            where="tuneloop.index.record_eval",
            fix=f"use one of {', '.join(EVAL_KINDS)}",
        )
    row = (
        None if run_dir is None else _run_key(run_dir),
        str(model_ref),
        kind,
        name,
        None if score is None else float(score),
        None if n is None else int(n),
        None if details_path is None else str(Path(details_path).resolve()),
        variant,
        checkpoint,
        None if extra is None else _json(extra),
        _now(),
    )
    with _using(index) as db, _write(db):
        cur = db.execute(
            """
            INSERT INTO evals (run_dir, model_ref, kind, name, score, n, details_path,
                               variant, checkpoint, extra_json, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            row,
        )
        return int(cur.lastrowid)


def _decode(row: sqlite3.Row, json_col: str, key: str) -> dict[str, Any]:
    out = dict(row)
    raw = out.pop(json_col)
    out[key] = json.loads(raw) if raw else ({} if key == "config" else None)
    return out


def list_runs(*, index: str | Path | sqlite3.Connection | None = None) -> list[dict[str, Any]]:
    """All runs, most recently updated first, each with its latest suite score joined."""
    with _using(index) as db:
        rows = db.execute(
            """
            SELECT r.*,
                   s.score AS latest_suite_score,
                   s.name AS latest_suite_name,
                   s.variant AS latest_suite_variant,
                   s.created_at AS latest_suite_at
            FROM runs r
            LEFT JOIN evals s ON s.id = (
                SELECT e.id FROM evals e
                WHERE e.run_dir = r.run_dir AND e.kind = 'suite'
                ORDER BY e.id DESC LIMIT 1
            )
            ORDER BY r.updated_at DESC, r.run_dir
            """
        ).fetchall()
    return [_decode(row, "config_json", "config") for row in rows]


def list_evals(
    run_dir: str | Path | None = None, *, index: str | Path | sqlite3.Connection | None = None
) -> list[dict[str, Any]]:
    """Evaluation rows in the order recorded; only those of `run_dir` if given."""
    with _using(index) as db:
        if run_dir is None:
            rows = db.execute("SELECT * FROM evals ORDER BY id").fetchall()
        else:
            rows = db.execute(
                "SELECT * FROM evals WHERE run_dir = ? ORDER BY id", (_run_key(run_dir),)
            ).fetchall()
    return [_decode(row, "extra_json", "extra") for row in rows]


def record_round(
    loop: str | Path,
    round_no: int,
    *,
    parent_id: int | None,
    eval_path: str | Path,
    data_paths: list[str],
    pass_rate: float | None,
    n_cases: int | None,
    run_dir: str | Path | None = None,
    extra: dict | None = None,
    n_fixed: int | None = None,
    n_broken: int | None = None,
    p_value: float | None = None,
    verdict: str | None = None,
    index: str | Path | sqlite3.Connection | None = None,
) -> int:
    """Record round `round_no` of the loop kept in directory `loop`; returns its id.

    `parent_id` is the id of the round it started from (None for round 1); a round number is
    recorded once. The verdict fields compare it with that parent (m005_round_verdicts).
    """
    row = (_run_key(loop), int(round_no), parent_id,
           None if run_dir is None else _run_key(run_dir), str(Path(eval_path).resolve()),
           _json(list(data_paths)), None if pass_rate is None else float(pass_rate),
           None if n_cases is None else int(n_cases), None if extra is None else _json(extra),
           _now(), n_fixed, n_broken, p_value, verdict)
    with _using(index) as db, _write(db):
        if parent_id is not None and not db.execute(
                "SELECT 1 FROM rounds WHERE id = ? AND loop = ?", (parent_id, row[0])).fetchone():
            raise IndexDBError(f"parent round id {parent_id} is not a round of this loop",
                               where=row[0], fix="pass the id record_round returned for round N-1")
        try:
            cur = db.execute(
                """
                INSERT INTO rounds (loop, round, parent_id, run_dir, eval_path, data_json,
                                    pass_rate, n_cases, extra_json, created_at, n_fixed,
                                    n_broken, p_value, verdict)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                row,
            )
        except sqlite3.IntegrityError:
            raise IndexDBError(f"round {round_no} of this loop is already recorded", where=row[0],
                               fix="continue from the loop's latest round, or use a new loop "
                               "directory") from None
        return int(cur.lastrowid)


def best_round(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The loop's current round among `list_rounds` rows: the highest pass rate, the earliest of
    equals (a later round must beat it, not tie it), never a regression."""
    ok = [r for r in rounds if r.get("verdict") != "regression"] or list(rounds)
    return max(ok, key=lambda r: (r["pass_rate"] or 0.0, -r["round"]))


def list_rounds(
    loop: str | Path, *, index: str | Path | sqlite3.Connection | None = None
) -> list[dict[str, Any]]:
    """The rounds of the loop kept in `loop`, in round order (`extra` decoded)."""
    with _using(index) as db:
        rows = db.execute(
            "SELECT * FROM rounds WHERE loop = ? ORDER BY round", (_run_key(loop),)
        ).fetchall()
    return [_decode(row, "extra_json", "extra") for row in rows]


TRIAL_STATES = ("complete", "pruned", "failed")


def record_trial(
    sweep: str | Path,
    trial: int,
    *,
    params: dict[str, Any],
    state: str,
    value: float | None = None,
    run_dir: str | Path | None = None,
    steps: int | None = None,
    extra: dict | None = None,
    index: str | Path | sqlite3.Connection | None = None,
) -> int:
    """Record trial `trial` of the sweep kept in directory `sweep`; returns its id.

    `state` is one of TRIAL_STATES; a trial number is recorded once per sweep.
    """
    if state not in TRIAL_STATES:
        raise IndexDBError(f"unknown trial state {state!r}", where="tuneloop.index.record_trial",
                           fix=f"use one of {', '.join(TRIAL_STATES)}")
    row = (_run_key(sweep), int(trial), None if run_dir is None else _run_key(run_dir),
           _json(params), None if value is None else float(value), state,
           None if steps is None else int(steps), None if extra is None else _json(extra), _now())
    with _using(index) as db, _write(db):
        try:
            cur = db.execute(
                """
                INSERT INTO sweep_trials (sweep, trial, run_dir, params_json, value, state,
                                          steps, extra_json, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                row,
            )
        except sqlite3.IntegrityError:
            raise IndexDBError(f"trial {trial} of this sweep is already recorded", where=row[0],
                               fix="use a new sweep directory (--out)") from None
        return int(cur.lastrowid)


def list_trials(
    sweep: str | Path, *, index: str | Path | sqlite3.Connection | None = None
) -> list[dict[str, Any]]:
    """The trials of the sweep kept in `sweep`, in trial order (`params`, `extra` decoded)."""
    with _using(index) as db:
        rows = db.execute(
            "SELECT * FROM sweep_trials WHERE sweep = ? ORDER BY trial", (_run_key(sweep),)
        ).fetchall()
    out = []
    for row in rows:
        item = _decode(row, "extra_json", "extra")
        item["params"] = json.loads(item.pop("params_json"))
        out.append(item)
    return out
