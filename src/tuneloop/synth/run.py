"""A synth run's output directory: resumable appends, request budget, manifest and stats.

Resume works by replay. Every request goes through the backend's sqlite cache (kept in the output
directory unless the generator spec names another), and every choice a run makes (which examples
a prompt shows, what passes the filters) depends only on its seed and on the answers. Rerunning
the same command therefore walks the same path again: requests answered before come from the
cache (nothing is sent twice), rows already in train.jsonl / rejects.jsonl are checked against
the replay and skipped, and new rows are appended and fsynced one by one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.backends import Generator, GenParams, Messages, make_generator, parse_spec
from tuneloop.backends.cache import CachedGenerator, cache_key
from tuneloop.errors import UsageError

CACHE_FILE = "requests.sqlite"
# Manifest fields that must match for a rerun to continue the same run.
_RESUME_KEYS = ("recipe", "generator", "judge", "params", "prompts", "inputs")


def open_generator(spec: str | dict[str, Any] | Generator, out: Path) -> Generator:
    """A cached generator for `spec`; the cache lives in `out` unless the spec names one."""
    if not isinstance(spec, (str, dict)):
        if isinstance(spec, CachedGenerator):
            return spec
        return CachedGenerator(spec, path=out / CACHE_FILE)
    conf = parse_spec(spec)
    conf["cache"] = conf.get("cache") or str(out / CACHE_FILE)
    return make_generator(conf)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temp file + rename, so a kill never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Appender:
    """Append-only JSONL with fsync per row; on reopen, existing rows are replayed, not rewritten."""

    def __init__(self, path: Path):
        self.path = path
        self.existing: list[str] = []
        if path.exists():
            data = path.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]  # a kill mid-write leaves a torn last line
            if len(complete) != len(data):
                with open(path, "r+b") as fh:
                    fh.truncate(len(complete))
            self.existing = complete.decode("utf-8").splitlines()
        self.seen = 0
        self.written = 0
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def append(self, row: dict[str, Any]) -> None:
        """Write `row` unless the replay is still inside rows written by an earlier attempt."""
        line = json.dumps(row, ensure_ascii=False, sort_keys=True)
        if self.seen < len(self.existing):
            if self.existing[self.seen] != line:
                raise UsageError(
                    f"resuming diverged from the rows already written ({self.path.name} row "
                    f"{self.seen + 1} differs)", where=str(self.path),
                    fix="the cache or prompts changed under this run; start again with a new --out")
            self.seen += 1
            return
        self._fh.write(line + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.seen += 1
        self.written += 1

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


@dataclass
class Reply:
    """One answered request: the text and its id (the cache key's prefix)."""

    text: str
    request_id: str


class BudgetSpent(Exception):
    """Raised internally when --max-requests leaves no room for the next request group."""


@dataclass
class Budget:
    """--max-requests: requests of the run's sequence so far, and the limit (None = none)."""

    limit: int | None
    used: int = 0

    def room(self) -> int | None:
        """Requests still allowed."""
        return None if self.limit is None else max(0, self.limit - self.used)


class Requester:
    """Sends prompt batches through the cached generator, counting against the budget.

    The budget counts every request of the run's sequence (answered from the cache or not), so a
    resumed run stops at the same place an uninterrupted one would.
    """

    def __init__(self, generator: Generator, max_requests: int | None = None,
                 share_budget_with: Requester | None = None):
        self.generator = generator
        # A judge on another backend spends from the generator's budget (one --max-requests).
        self.budget: Budget = share_budget_with.budget if share_budget_with else \
            Budget(max_requests)
        self.count = 0
        self.sent = 0  # requests this invocation had to send (not answered by the cache)
        self.by_kind: dict[str, int] = {}
        inner = getattr(generator, "inner", generator)
        # A URL backend has its own concurrency limit: send one prompt per call from that many
        # threads so each answer is cached the moment it arrives (a kill loses nothing paid).
        self.concurrency: int | None = getattr(inner, "max_concurrency", None)

    @property
    def name(self) -> str:
        """The generator's identity (recorded in rows and the manifest)."""
        return self.generator.name

    def room(self) -> int | None:
        """How many more requests the budget allows (None = unlimited)."""
        return self.budget.room()

    def run(self, kind: str, prompts: list[Messages], params: GenParams) -> list[Reply]:
        """Answer all prompts (raises BudgetSpent, sending nothing, if they do not fit)."""
        room = self.room()
        if room is not None and len(prompts) > room:
            raise BudgetSpent
        if not prompts:
            return []
        unique: dict[str, Messages] = {}  # the same prompt twice in a group is sent once
        for p in prompts:
            unique.setdefault(json.dumps(p, sort_keys=True), p)
        todo = list(unique.values())
        cache = getattr(self.generator, "cache", None)
        if cache is not None:  # what this call will send, counted before sending
            keys = [cache_key(self.name, p, params) for p in todo]
            self.sent += len(set(keys) - set(cache.get_many(keys)))
        if self.concurrency and len(todo) > 1:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo))) as pool:
                answers = list(pool.map(lambda p: self.generator.generate([p], params)[0], todo))
        else:
            answers = self.generator.generate(todo, params)
        by_key = dict(zip(unique.keys(), answers))
        texts = [by_key[json.dumps(p, sort_keys=True)] for p in prompts]
        self.count += len(prompts)
        self.budget.used += len(prompts)
        self.by_kind[kind] = self.by_kind.get(kind, 0) + len(prompts)
        return [Reply(t, "req-" + cache_key(self.name, p, params)[:16])
                for t, p in zip(texts, prompts)]


class SynthRun:
    """The output directory of one synth run: train.jsonl, rejects.jsonl, stats.json, manifest."""

    def __init__(self, out: str | Path, manifest: dict[str, Any]):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "manifest.json"
        if path.exists():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old = None
            if not isinstance(old, dict):
                raise UsageError("manifest.json is unreadable", where=str(path),
                                 fix="use a new --out directory")
            changed = [k for k in _RESUME_KEYS if old.get(k) != manifest.get(k)]
            if changed:
                raise UsageError(
                    f"{self.out} holds a different synth run (changed: {', '.join(changed)})",
                    where=str(path), fix="rerun with the same options to resume, or pass a new "
                    "--out directory")
            self.resumed = True
        else:
            self.resumed = False
        write_json_atomic(path, manifest)
        self.manifest = manifest
        self.train = Appender(self.out / "train.jsonl")
        self.rejects = Appender(self.out / "rejects.jsonl")

    def write_stats(self, stats: dict[str, Any]) -> None:
        """stats.json (atomic)."""
        write_json_atomic(self.out / "stats.json", stats)

    def close(self) -> None:
        """Close both JSONL files."""
        self.train.close()
        self.rejects.close()


def progress_bar(label: str, total: int, enabled: bool) -> tuple[Any, Callable[..., None]]:
    """The shared progress style plus accepted/rejected counts; returns (progress, update)."""
    from rich.progress import TextColumn

    from tuneloop.progress import eta_progress

    prog = eta_progress("{task.description}",
                        TextColumn("[green]accepted {task.fields[acc]}[/] "
                                   "[red]rejected {task.fields[rej]}[/]"),
                        enabled=enabled)
    task = prog.add_task(label, total=total, acc=0, rej=0)

    def update(completed: int, acc: int, rej: int) -> None:
        prog.update(task, completed=min(completed, total), acc=acc, rej=rej)

    return prog, update
