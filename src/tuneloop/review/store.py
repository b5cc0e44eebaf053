"""The review database: the items shown, reviewer sessions and one save per item per reviewer.

The schema only grows, through the named migrations below, applied by the run index's machinery
(`tuneloop.index.migrate`). A reviewer saves each item at most once: `reviews` is UNIQUE on
(item, reviewer), and a second save by the same reviewer *replaces* the first (a slip of the
mouse is undone by saving again). What it replaced is not lost: the earlier save is copied into
the append-only `replaced` table in the same `BEGIN IMMEDIATE` transaction, so concurrent saves
neither lose nor double a row.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from tuneloop.errors import TuneloopError
from tuneloop.index import Migration, write_transaction
from tuneloop.review.items import Item
from tuneloop.serve.pages import SESSIONS_TABLE
from tuneloop.serve.pagestore import PageStore, utc_now

ACTIONS = ("written", "accepted", "rejected", "edited")
MIGRATIONS: list[Migration] = []


class ReviewDBError(TuneloopError):
    """The review database cannot be opened, or is some other tool's file."""


def migration(fn: Migration) -> Migration:
    """Register `fn` as the review database's next migration; its name is its permanent id."""
    MIGRATIONS.append(fn)
    return fn


@migration
def r001_initial(db: sqlite3.Connection) -> None:
    """Items (cases and generated rows), sessions, one review per item and reviewer, replaced saves."""
    db.execute(
        "CREATE TABLE items (id TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN "
        "('case', 'row')), data_json TEXT NOT NULL, created_at TEXT NOT NULL)")
    db.execute(SESSIONS_TABLE)
    db.execute(
        f"""
        CREATE TABLE reviews (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            item_id TEXT NOT NULL REFERENCES items (id),
            reviewer TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ({", ".join(repr(a) for a in ACTIONS)})),
            question TEXT,
            answer TEXT,
            saves INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (item_id, reviewer)
        )
        """)
    db.execute(
        """
        CREATE TABLE replaced (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            review_id INTEGER NOT NULL REFERENCES reviews (id),
            item_id TEXT NOT NULL,
            reviewer TEXT NOT NULL,
            action TEXT NOT NULL,
            question TEXT,
            answer TEXT,
            saved_at TEXT NOT NULL,
            replaced_at TEXT NOT NULL
        )
        """)
    for action in ("UPDATE", "DELETE"):
        db.execute(f"CREATE TRIGGER replaced_no_{action.lower()} BEFORE {action} ON replaced "
                   "BEGIN SELECT RAISE(ABORT, 'replaced saves are append-only'); END")


@dataclass(frozen=True)
class Review:
    """One reviewer's current save of one item."""

    id: int
    item_id: str
    reviewer: str
    action: str
    question: str | None
    answer: str | None
    saves: int
    created_at: str
    updated_at: str


class ReviewStore(PageStore):
    """The review database at `path`; one sqlite connection per thread (the web app is threaded)."""

    kind = "review"
    error = ReviewDBError
    migrations = MIGRATIONS

    # -- items ---------------------------------------------------------------------------------

    def add_items(self, items: list[Item]) -> None:
        """Record the items shown. Ids come from their content, so a restart finds the same
        items; what is shown beside them (the targeted chunk) is refreshed."""
        now = utc_now()
        with write_transaction(self.db) as db:
            db.executemany(
                "INSERT INTO items (id, kind, data_json, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET data_json = excluded.data_json",
                [(i.id, i.kind, json.dumps(i.data, ensure_ascii=False, sort_keys=True), now)
                 for i in items])

    def item(self, item_id: str) -> Item | None:
        """The stored item, or None."""
        if not item_id or len(item_id) > 100:
            return None
        row = self.db.execute("SELECT id, kind, data_json FROM items WHERE id = ?",
                              (item_id,)).fetchone()
        return Item(row[0], row[1], json.loads(row[2])) if row else None

    # -- reviews -------------------------------------------------------------------------------

    def save(self, item_id: str, reviewer: str, action: str, question: str | None = None,
             answer: str | None = None) -> tuple[int, bool]:
        """Save `reviewer`'s review of `item_id`: (review id, whether an earlier save was replaced).

        The earlier save, if any, is kept in `replaced`; the check and both writes are one
        transaction, so two saves racing for the same item and reviewer leave one review.
        """
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
        now = utc_now()
        with write_transaction(self.db) as db:
            old = db.execute("SELECT * FROM reviews WHERE item_id = ? AND reviewer = ?",
                             (item_id, reviewer)).fetchone()
            if old is None:
                cur = db.execute(
                    "INSERT INTO reviews (item_id, reviewer, action, question, answer, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (item_id, reviewer, action, question, answer, now, now))
                return int(cur.lastrowid), False
            db.execute(
                "INSERT INTO replaced (review_id, item_id, reviewer, action, question, answer, "
                "saved_at, replaced_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (old["id"], item_id, reviewer, old["action"], old["question"], old["answer"],
                 old["updated_at"], now))
            db.execute("UPDATE reviews SET action = ?, question = ?, answer = ?, "
                       "saves = saves + 1, updated_at = ? WHERE id = ?",
                       (action, question, answer, now, old["id"]))
            return int(old["id"]), True

    def reviews(self, reviewer: str | None = None) -> list[Review]:
        """Current reviews (all, or one reviewer's), in the order they were last saved."""
        sql = "SELECT * FROM reviews"
        args: tuple[Any, ...] = ()
        if reviewer is not None:
            sql, args = sql + " WHERE reviewer = ?", (reviewer,)
        rows = self.db.execute(sql + " ORDER BY updated_at, id", args).fetchall()
        return [Review(**dict(r)) for r in rows]

    def replaced_count(self) -> int:
        """Earlier saves that a later save by the same reviewer replaced."""
        return self.db.execute("SELECT COUNT(*) FROM replaced").fetchone()[0]


# A review database that must already exist (for `export` and `load_reviewed`).
open_existing = ReviewStore.open_existing
