"""The arena database: named append-only migrations, WAL, one vote per battle, wrong inputs refused."""

from __future__ import annotations

import sqlite3

import pytest

from tuneloop import index
from tuneloop.arena import store as arena_store
from tuneloop.arena.prompts import parse_models, prompt_id, read_prompts
from tuneloop.arena.store import ArenaDBError, ArenaStore, VoteRejected, open_existing
from tuneloop.errors import DataError, UsageError

MSG = [{"role": "user", "content": "hi"}]


def _filled(path) -> tuple[ArenaStore, arena_store.Session]:
    store = ArenaStore(path)
    store.add_prompts({"q1": MSG})
    store.add_models({"alpha": "a-spec", "beta": "b-spec"})
    store.put_answers("alpha", {"q1": "A!"}, {"max_tokens": 8})
    store.put_answers("beta", {"q1": "B!"}, {"max_tokens": 8})
    _, session = store.create_session("ann")
    return store, session


def test_fresh_db_has_every_named_migration_in_wal(tmp_path):
    """A new arena file gets all arena migrations, recorded by name, in WAL mode."""
    store = ArenaStore(tmp_path / "deep" / "a.sqlite")
    names = [fn.__name__ for fn in arena_store.MIGRATIONS]
    assert names and len(names) == len(set(names))
    assert index.applied_migrations(store.db) == names
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"prompts", "models", "answers", "sessions", "battles", "votes", "skips"} <= tables
    store.close()
    # Reopening applies nothing new and keeps rows.
    again = ArenaStore(tmp_path / "deep" / "a.sqlite")
    assert index.migrate(again.db, migrations=arena_store.MIGRATIONS) == []
    again.close()


def test_index_migrations_unchanged_by_the_generalisation(tmp_path):
    """index.migrate without `migrations` still applies the index's own list, not the arena's."""
    db = index.connect(tmp_path / "i.sqlite")
    assert index.migrate(db) == [fn.__name__ for fn in index.MIGRATIONS]
    db.close()


def test_votes_and_battles_are_append_only(tmp_path):
    """UPDATE and DELETE on battles/votes/skips are refused by the database itself."""
    store, session = _filled(tmp_path / "a.sqlite")
    bid = store.issue_battle(session, "q1", "alpha", "beta")
    store.cast_vote(session, bid, "a")
    for sql in ("UPDATE votes SET winner = 'b'", "DELETE FROM votes",
                "UPDATE battles SET model_a = 'beta'", "DELETE FROM battles"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store.db.execute(sql)
    assert store.votes()[0]["winner"] == "a"


def test_one_vote_per_battle_and_rejections(tmp_path):
    """R23 at the store: replays, unknown ids, another session's battle, skipped battles refused."""
    store, session = _filled(tmp_path / "a.sqlite")
    _, other = store.create_session("bob")
    bid = store.issue_battle(session, "q1", "alpha", "beta")
    with pytest.raises(VoteRejected) as exc:
        store.cast_vote(other, bid, "a")
    assert exc.value.status == 403
    vote_id = store.cast_vote(session, bid, "b", "clearer")
    assert len(vote_id) >= 20
    with pytest.raises(VoteRejected) as exc:
        store.cast_vote(session, bid, "a")
    assert exc.value.status == 409
    with pytest.raises(VoteRejected) as exc:
        store.cast_vote(session, "forged-" + bid, "a")
    assert exc.value.status == 404
    with pytest.raises(VoteRejected) as exc:
        store.cast_vote(session, bid, "maybe")
    assert exc.value.status == 400
    skipped = store.issue_battle(session, "q1", "beta", "alpha")
    store.skip(session, skipped)
    with pytest.raises(VoteRejected) as exc:
        store.cast_vote(session, skipped, "a")
    assert exc.value.status == 409
    assert store.vote_count() == 1
    battle = store.battle(bid)
    assert (battle.winner, battle.reason, battle.vote_id) == ("b", "clearer", vote_id)
    # The UNIQUE constraint holds even if the checks were bypassed.
    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute("INSERT INTO votes VALUES ('x', ?, 'ann', 'a', '', 'now')", (bid,))


def test_vote_limit_per_rater(tmp_path):
    """A rater restricted to N votes gets 403 on vote N+1, counted across their sessions."""
    store, session = _filled(tmp_path / "a.sqlite")
    _, again = store.create_session("ann")  # the same name on a second device
    store.cast_vote(session, store.issue_battle(session, "q1", "alpha", "beta"), "a", max_votes=2)
    store.cast_vote(again, store.issue_battle(again, "q1", "alpha", "beta"), "b", max_votes=2)
    with pytest.raises(VoteRejected) as exc:
        store.cast_vote(session, store.issue_battle(session, "q1", "beta", "alpha"), "a",
                        max_votes=2)
    assert exc.value.status == 403 and store.vote_count("ann") == 2


def test_sessions_store_only_token_hashes(tmp_path):
    """The cookie token itself is never written to the database."""
    store = ArenaStore(tmp_path / "a.sqlite")
    token, session = store.create_session("ann")
    assert store.session(token) == session
    assert store.session("nope") is None and store.session(None) is None
    assert token not in str(store.db.execute("SELECT * FROM sessions").fetchall())


def test_changed_prompt_or_model_under_same_name_is_refused(tmp_path):
    """Votes must never be attributed to text or a model they were not cast on."""
    store, _ = _filled(tmp_path / "a.sqlite")
    with pytest.raises(ArenaDBError, match="prompt id 'q1'"):
        store.add_prompts({"q1": [{"role": "user", "content": "other"}]})
    with pytest.raises(ArenaDBError, match="model name 'alpha'"):
        store.add_models({"alpha": "another-spec"})
    store.add_prompts({"q1": MSG})  # the same again is fine
    store.add_models({"alpha": "a-spec"})


def test_foreign_or_broken_files_are_refused(tmp_path):
    """The run index or a non-sqlite file is not taken for an arena database."""
    idx = index.open_index(tmp_path / "index.sqlite")
    idx.close()
    with pytest.raises(ArenaDBError, match="not an arena database"):
        ArenaStore(tmp_path / "index.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ArenaDBError):
        ArenaStore(junk)
    with pytest.raises(ArenaDBError, match="no arena database"):
        open_existing(tmp_path / "missing.sqlite")


def test_read_prompts_and_model_args(tmp_path):
    """Prompt rows (prompt / messages / id) and --model NAME=SPEC parse; bad rows name file:line."""
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"id": 7, "messages": [{"role": "user", "content": "b"},'
                    ' {"role": "assistant", "content": "ref"}]}\n', encoding="utf-8")
    prompts = read_prompts(path)
    assert prompts == {prompt_id([{"role": "user", "content": "a"}]):
                       [{"role": "user", "content": "a"}],
                       "7": [{"role": "user", "content": "b"}]}
    path.write_text('{"prompt": "a"}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="p.jsonl:2"):
        read_prompts(path)
    path.write_text('{"prompt": "a"}\n{"prompt": "a"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="repeats the row at .*p.jsonl:1"):
        read_prompts(path)
    assert parse_models(["base=smollm2-135m-instruct", "openai:http://h:1/v1#m"]) == {
        "base": "smollm2-135m-instruct", "openai:http://h:1/v1#m": "openai:http://h:1/v1#m"}
    with pytest.raises(UsageError, match="at least two"):
        parse_models(["only"])
    with pytest.raises(UsageError, match="both named 'x'"):
        parse_models(["x=a", "x=b"])


def test_db_at_first_migration_upgrades_keeping_rows(tmp_path):
    """An arena file made by a001 only gains models.system_prompt (a002) with its rows intact."""
    path = tmp_path / "old.sqlite"
    db = index.connect(path)
    assert index.migrate(db, upto=1, migrations=arena_store.MIGRATIONS) == ["a001_initial"]
    db.execute("INSERT INTO models VALUES ('alpha', 'a-spec', 'then')")  # as a001 code wrote it
    db.close()
    store = ArenaStore(path)
    assert index.applied_migrations(store.db)[-1] == "a002_model_system_prompt"
    row = store.db.execute("SELECT name, spec, system_prompt FROM models").fetchone()
    assert tuple(row) == ("alpha", "a-spec", None)
    store.add_models({"alpha": "a-spec"})  # same model, no system prompt: accepted
    with pytest.raises(ArenaDBError, match="with system prompt 'Be terse.'"):
        store.add_models({"alpha": "a-spec"}, {"alpha": "Be terse."})
    store.close()


def test_system_prompt_arguments():
    """--system-prompt must be NAME=TEXT for a known model, once per model."""
    from tuneloop.arena.prompts import parse_system_prompts, with_system

    models = {"a": "x", "b": "x"}
    assert parse_system_prompts(["b=Be terse. a=b"], models) == {"b": "Be terse. a=b"}
    for bad, match in ((["c=hi"], "not a --model name"), (["b"], "not NAME=TEXT"),
                       (["b=1", "b=2"], "two --system-prompt")):
        with pytest.raises(UsageError, match=match):
            parse_system_prompts(bad, models)
    assert with_system(MSG, "S") == [{"role": "system", "content": "S"}, *MSG]
    assert with_system(MSG, None) == MSG
