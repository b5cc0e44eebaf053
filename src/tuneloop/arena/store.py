"""The arena database: prompts, models, answers, rater sessions, battles and votes in one sqlite file.

The schema only grows, through the named migrations below, applied and recorded by the same
machinery as the run index (`tuneloop.index.migrate`). Battles and votes are append-only: sqlite
triggers refuse UPDATE and DELETE on them, so a vote once cast is never rewritten.

One vote per battle is enforced by the database itself (`votes.battle_id` is UNIQUE) and every
vote is checked and written inside one `BEGIN IMMEDIATE` transaction, so two requests racing with
the same battle id cannot both succeed (R23, R24). Battle, vote and session ids are 128-bit random
tokens from `secrets`; sessions are stored only as sha256 hashes of their cookie token.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from tuneloop.errors import TuneloopError
from tuneloop.index import Migration, write_transaction
from tuneloop.serve.pages import Session, new_token
from tuneloop.serve.pagestore import PageStore, utc_now

WINNERS = ("a", "b", "tie", "both_bad")
MIGRATIONS: list[Migration] = []


class ArenaDBError(TuneloopError):
    """The arena database cannot be opened, or does not match the prompts/models given."""


class VoteRejected(Exception):
    """A vote (or skip, or reveal) the server refuses; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def migration(fn: Migration) -> Migration:
    """Register `fn` as the arena's next migration; its function name is its permanent id."""
    MIGRATIONS.append(fn)
    return fn


def _append_only(db: sqlite3.Connection, table: str) -> None:
    for action in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} are append-only'); END"
        )


@migration
def a001_initial(db: sqlite3.Connection) -> None:
    """Prompts, models, answers, sessions; battles, votes and skips append-only."""
    db.execute(
        "CREATE TABLE prompts (id TEXT PRIMARY KEY, messages_json TEXT NOT NULL, "
        "created_at TEXT NOT NULL)"
    )
    db.execute(
        "CREATE TABLE models (name TEXT PRIMARY KEY, spec TEXT NOT NULL, created_at TEXT NOT NULL)"
    )
    db.execute(
        """
        CREATE TABLE answers (
            prompt_id TEXT NOT NULL REFERENCES prompts (id),
            model TEXT NOT NULL REFERENCES models (name),
            text TEXT NOT NULL,
            params_json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (prompt_id, model)
        )
        """
    )
    db.execute(
        "CREATE TABLE sessions (token_hash TEXT PRIMARY KEY, rater TEXT NOT NULL, "
        "csrf TEXT NOT NULL, created_at TEXT NOT NULL)"
    )
    db.execute(
        """
        CREATE TABLE battles (
            id TEXT PRIMARY KEY,
            session_hash TEXT NOT NULL REFERENCES sessions (token_hash),
            rater TEXT NOT NULL,
            prompt_id TEXT NOT NULL REFERENCES prompts (id),
            model_a TEXT NOT NULL REFERENCES models (name),
            model_b TEXT NOT NULL REFERENCES models (name),
            created_at TEXT NOT NULL,
            CHECK (model_a <> model_b)
        )
        """
    )
    db.execute(
        f"""
        CREATE TABLE votes (
            id TEXT PRIMARY KEY,
            battle_id TEXT NOT NULL UNIQUE REFERENCES battles (id),
            rater TEXT NOT NULL,
            winner TEXT NOT NULL CHECK (winner IN ({", ".join(repr(w) for w in WINNERS)})),
            reason TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        "CREATE TABLE skips (battle_id TEXT PRIMARY KEY REFERENCES battles (id), "
        "created_at TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX battles_by_session ON battles (session_hash)")
    db.execute("CREATE INDEX votes_by_rater ON votes (rater)")
    for table in ("battles", "votes", "skips"):
        _append_only(db, table)


@migration
def a002_model_system_prompt(db: sqlite3.Connection) -> None:
    """A model may answer with its own system prompt (the "base + prompt" variant)."""
    db.execute("ALTER TABLE models ADD COLUMN system_prompt TEXT")


@dataclass(frozen=True)
class Battle:
    """One prompt and two models on fixed sides, issued to one session."""

    id: str
    session_hash: str
    rater: str
    prompt_id: str
    model_a: str
    model_b: str
    messages: list[dict[str, str]]
    answer_a: str
    answer_b: str
    winner: str | None = None
    reason: str = ""
    vote_id: str | None = None


class ArenaStore(PageStore):
    """The arena database at `path`; one sqlite connection per thread (the web app is threaded)."""

    kind = "arena"
    article = "an"
    error = ArenaDBError
    migrations = MIGRATIONS

    # -- prompts, models, answers ------------------------------------------------------------

    def add_prompts(self, prompts: dict[str, list[dict[str, str]]]) -> None:
        """Record prompts by id; an id already stored with other messages is an error."""
        with write_transaction(self.db) as db:
            for pid, messages in prompts.items():
                text = json.dumps(messages, ensure_ascii=False, sort_keys=True)
                row = db.execute("SELECT messages_json FROM prompts WHERE id = ?", (pid,)).fetchone()
                if row is None:
                    db.execute("INSERT INTO prompts VALUES (?, ?, ?)", (pid, text, utc_now()))
                elif row[0] != text:
                    raise ArenaDBError(
                        f"prompt id {pid!r} is already stored with different text",
                        where=str(self.path),
                        fix="give the changed prompt a new id, or start a new --db")

    def add_models(self, models: dict[str, str],
                   system_prompts: dict[str, str] | None = None) -> None:
        """Record models by name → spec (+ system prompt); a name stored otherwise is an error."""
        system_prompts = system_prompts or {}
        with write_transaction(self.db) as db:
            for name, spec in models.items():
                system = system_prompts.get(name)
                row = db.execute("SELECT spec, system_prompt FROM models WHERE name = ?",
                                 (name,)).fetchone()
                if row is None:
                    db.execute("INSERT INTO models (name, spec, system_prompt, created_at) "
                               "VALUES (?, ?, ?, ?)", (name, spec, system, utc_now()))
                elif (row[0], row[1]) != (spec, system):
                    was = row[0] + (f" with system prompt {row[1]!r}" if row[1] else "")
                    now = spec + (f" with system prompt {system!r}" if system else "")
                    raise ArenaDBError(
                        f"model name {name!r} is already stored for {was}, not {now}",
                        where=str(self.path),
                        fix="give this model another name (--model NAME=SPEC), or start a new --db")

    def missing_answers(self, prompt_ids: list[str], model: str) -> list[str]:
        """The prompt ids (in order) that have no stored answer from `model`."""
        have = {r[0] for r in self.db.execute(
            "SELECT prompt_id FROM answers WHERE model = ?", (model,))}
        return [p for p in prompt_ids if p not in have]

    def put_answers(self, model: str, answers: dict[str, str], params: dict[str, Any]) -> None:
        """Store `model`'s answers by prompt id (generated once; kept for export)."""
        params_json = json.dumps(params, sort_keys=True)
        with write_transaction(self.db) as db:
            db.executemany(
                "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?)",
                [(pid, model, text, params_json, utc_now()) for pid, text in answers.items()])

    # -- battles and votes --------------------------------------------------------------------

    def open_battle(self, session: Session) -> str | None:
        """The session's latest battle that has neither a vote nor a skip (a reload shows it)."""
        row = self.db.execute(
            """
            SELECT b.id FROM battles b
            WHERE b.session_hash = ?
              AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.battle_id = b.id)
              AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.battle_id = b.id)
            ORDER BY b.rowid DESC LIMIT 1
            """, (session.token_hash,)).fetchone()
        return row[0] if row else None

    def voted_items(self, rater: str) -> set[tuple[str, frozenset[str]]]:
        """(prompt id, {model, model}) pairs this rater has already voted on."""
        rows = self.db.execute(
            "SELECT b.prompt_id, b.model_a, b.model_b FROM votes v JOIN battles b "
            "ON b.id = v.battle_id WHERE v.rater = ?", (rater,))
        return {(p, frozenset((a, b))) for p, a, b in rows}

    def issue_battle(self, session: Session, prompt_id: str, model_a: str, model_b: str) -> str:
        """Record a new battle for `session` and return its unguessable id."""
        battle_id = new_token()
        with write_transaction(self.db) as db:
            db.execute("INSERT INTO battles VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (battle_id, session.token_hash, session.rater, prompt_id, model_a, model_b,
                        utc_now()))
        return battle_id

    def battle(self, battle_id: str) -> Battle | None:
        """A battle with its prompt, both answers and its vote (if cast), or None if unknown."""
        if not battle_id or len(battle_id) > 100:
            return None
        row = self.db.execute(
            """
            SELECT b.id, b.session_hash, b.rater, b.prompt_id, b.model_a, b.model_b,
                   p.messages_json,
                   aa.text, ab.text, v.winner, v.reason, v.id
            FROM battles b
            JOIN prompts p ON p.id = b.prompt_id
            JOIN answers aa ON aa.prompt_id = b.prompt_id AND aa.model = b.model_a
            JOIN answers ab ON ab.prompt_id = b.prompt_id AND ab.model = b.model_b
            LEFT JOIN votes v ON v.battle_id = b.id
            WHERE b.id = ?
            """, (battle_id,)).fetchone()
        if row is None:
            return None
        return Battle(*row[:6], json.loads(row[6]), row[7], row[8], row[9], row[10] or "",
                      row[11])

    def _owned(self, db: sqlite3.Connection, session: Session, battle_id: str) -> None:
        row = db.execute("SELECT session_hash FROM battles WHERE id = ?",
                         (battle_id,)).fetchone() if len(battle_id) <= 100 else None
        if row is None:
            raise VoteRejected(404, "unknown battle id: battles are issued by this server only")
        if row[0] != session.token_hash:
            raise VoteRejected(403, "this battle was issued to another session")
        if db.execute("SELECT 1 FROM votes WHERE battle_id = ?", (battle_id,)).fetchone():
            raise VoteRejected(409, "this battle already has a vote and its models were revealed; "
                               "each battle takes exactly one vote")
        if db.execute("SELECT 1 FROM skips WHERE battle_id = ?", (battle_id,)).fetchone():
            raise VoteRejected(409, "this battle was skipped; open a new one")

    def cast_vote(self, session: Session, battle_id: str, winner: str, reason: str = "",
                  max_votes: int | None = None) -> str:
        """Record the one vote `battle_id` takes and return its id; VoteRejected otherwise."""
        if winner not in WINNERS:
            raise VoteRejected(400, f"choice must be one of {', '.join(WINNERS)}, got {winner!r}")
        vote_id = new_token()
        with write_transaction(self.db) as db:
            self._owned(db, session, battle_id)
            if max_votes is not None:
                (done,) = db.execute("SELECT COUNT(*) FROM votes WHERE rater = ?",
                                     (session.rater,)).fetchone()
                if done >= max_votes:
                    raise VoteRejected(403, f"rater {session.rater!r} has cast the {max_votes} "
                                       "vote(s) allowed")
            db.execute("INSERT INTO votes VALUES (?, ?, ?, ?, ?, ?)",
                       (vote_id, battle_id, session.rater, winner, reason, utc_now()))
        return vote_id

    def skip(self, session: Session, battle_id: str) -> None:
        """Set an unvoted battle aside (it never takes a vote afterwards)."""
        with write_transaction(self.db) as db:
            self._owned(db, session, battle_id)
            db.execute("INSERT INTO skips VALUES (?, ?)", (battle_id, utc_now()))

    # -- counts and reading -----------------------------------------------------------------

    def vote_count(self, rater: str | None = None) -> int:
        """Votes cast in total, or by `rater`."""
        if rater is None:
            return self.db.execute("SELECT COUNT(*) FROM votes").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM votes WHERE rater = ?",
                               (rater,)).fetchone()[0]

    def votes(self) -> list[dict[str, Any]]:
        """Every vote with its battle, in the order cast."""
        rows = self.db.execute(
            """
            SELECT v.id AS vote_id, v.battle_id, v.rater, v.winner, v.reason, v.created_at,
                   b.prompt_id, b.model_a, b.model_b
            FROM votes v JOIN battles b ON b.id = v.battle_id
            ORDER BY v.rowid
            """).fetchall()
        return [dict(r) for r in rows]

    def models(self) -> list[str]:
        """Every model name ever registered, in name order."""
        return [r[0] for r in self.db.execute("SELECT name FROM models ORDER BY name")]

    def prompt_messages(self, prompt_id: str) -> list[dict[str, str]]:
        """The chat messages stored for `prompt_id`."""
        row = self.db.execute("SELECT messages_json FROM prompts WHERE id = ?",
                              (prompt_id,)).fetchone()
        return json.loads(row[0])

    def answer(self, prompt_id: str, model: str) -> str:
        """The stored answer of `model` to `prompt_id`."""
        return self.db.execute("SELECT text FROM answers WHERE prompt_id = ? AND model = ?",
                               (prompt_id, model)).fetchone()[0]


# An arena database that must already exist (for `results` and `export`).
open_existing = ArenaStore.open_existing
