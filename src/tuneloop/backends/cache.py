"""On-disk generation cache (sqlite) so re-running an eval or judge does not re-query a backend."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from tuneloop.backends.base import (
    Generator,
    GenParams,
    Messages,
    Scored,
    TokenChoice,
    scored_generate,
)
from tuneloop.workspace import workspace_home


def default_cache_path() -> Path:
    """`<workspace home>/cache/generations.sqlite`."""
    return workspace_home() / "cache" / "generations.sqlite"


def cache_key(model: str, messages: Messages, params: GenParams) -> str:
    """sha256 over the backend's model identity, the exact messages and the sampling params."""
    payload = json.dumps(
        {"model": model, "messages": messages, "params": params.to_dict()},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class GenerationCache:
    """A tiny key → completion store in one sqlite file, safe to share between threads."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # One connection guarded by a lock: generation is slow, the cache never is.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS generations ("
            " key TEXT PRIMARY KEY, model TEXT NOT NULL, completion TEXT NOT NULL,"
            " created REAL NOT NULL)"
        )
        self._conn.commit()

    def get_many(self, keys: list[str]) -> dict[str, str]:
        """Completions stored for any of `keys`."""
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # stay under sqlite's variable limit
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, completion FROM generations WHERE key IN ({marks})", chunk
                ).fetchall()
                found.update(rows)
        return found

    def put_many(self, model: str, items: dict[str, str]) -> None:
        """Store completions by key (last write wins)."""
        now = time.time()
        with self._lock:
            self._conn.executemany(
                "INSERT OR REPLACE INTO generations (key, model, completion, created)"
                " VALUES (?, ?, ?, ?)",
                [(k, model, v, now) for k, v in items.items()],
            )
            self._conn.commit()

    def close(self) -> None:
        """Close the sqlite connection."""
        with self._lock:
            self._conn.close()


class CachedGenerator:
    """Wraps any Generator: cached prompts are answered from disk, only misses reach the backend."""

    def __init__(self, inner: Generator, path: Path | str | None = None):
        self.inner = inner
        self.name = inner.name
        self.continues_prefix = bool(getattr(inner, "continues_prefix", False))
        self.cache = GenerationCache(path)
        self.hits = 0
        self.misses = 0

    def generate(self, prompts: list[Messages], params: GenParams) -> list[str]:
        """Answer from the cache where possible; query the backend once for the rest."""
        keys = [cache_key(self.name, p, params) for p in prompts]
        found = self.cache.get_many(keys)
        # Duplicate prompts in one call are sent once.
        todo: dict[str, Messages] = {}
        for key, prompt in zip(keys, prompts):
            if key not in found and key not in todo:
                todo[key] = prompt
        self.hits += sum(1 for k in keys if k in found)
        self.misses += len(todo)
        if todo:
            outputs = self.inner.generate(list(todo.values()), params)
            fresh = dict(zip(todo.keys(), outputs))
            self.cache.put_many(self.name, fresh)
            found.update(fresh)
        return [found[k] for k in keys]

    def generate_scored(self, prompts: list[Messages], params: GenParams,
                        top_logprobs: int) -> list[Scored]:
        """Scored completions, cached like text ones (keyed also by `top_logprobs`)."""
        ident = f"{self.name}|top_logprobs={top_logprobs}"
        keys = [cache_key(ident, p, params) for p in prompts]
        found = {k: _scored_from_json(v) for k, v in self.cache.get_many(keys).items()}
        todo: dict[str, Messages] = {}
        for key, prompt in zip(keys, prompts):
            if key not in found and key not in todo:
                todo[key] = prompt
        self.hits += sum(1 for k in keys if k in found)
        self.misses += len(todo)
        if todo:
            outputs = scored_generate(self.inner, list(todo.values()), params, top_logprobs)
            fresh = dict(zip(todo.keys(), outputs))
            self.cache.put_many(self.name, {k: _scored_to_json(v) for k, v in fresh.items()})
            found.update(fresh)
        return [found[k] for k in keys]


def _scored_to_json(s: Scored) -> str:
    tokens = None if s.tokens is None else [[t.token, t.logprob, [list(a) for a in t.top]]
                                             for t in s.tokens]
    return json.dumps({"text": s.text, "tokens": tokens}, ensure_ascii=False)


def _scored_from_json(raw: str) -> Scored:
    data = json.loads(raw)
    tokens = None if data["tokens"] is None else tuple(
        TokenChoice(tok, lp, tuple((a, b) for a, b in top)) for tok, lp, top in data["tokens"])
    return Scored(data["text"], tokens)
