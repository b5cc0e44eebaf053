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

from tuneloop.backends import (
    Generator,
    GenParams,
    Messages,
    Scored,
    TokenChoice,
    make_generator,
    parse_spec,
    scored_generate,
)
from tuneloop.backends.cache import CachedGenerator, cache_key
from tuneloop.errors import TuneloopError, UsageError

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


class OutGuard:
    """What `--out` held before a run, so a run that got no answer at all can leave it so.

    A generator that cannot be reached fails on the first request: rather than a manifest, an
    empty cache and (self-instruct) a seeds-only train.jsonl that looks like a result, every
    file this invocation created is removed again (and the directory, if it made it).
    """

    def __init__(self, out: Path):
        self.out = out
        self.existed = out.exists()
        self.before = set(os.listdir(out)) if self.existed and out.is_dir() else set()

    def restore(self, *generators: Generator) -> None:
        """Close the generators' caches and remove what was created since `__init__`."""
        for gen in generators:
            cache = getattr(gen, "cache", None)
            if cache is not None:
                cache.close()
        if not self.out.is_dir():
            return
        for name in set(os.listdir(self.out)) - self.before:
            path = self.out / name
            if path.is_file():
                path.unlink()
        if not self.existed and not any(self.out.iterdir()):
            self.out.rmdir()


def backend_failure(exc: TuneloopError, out: Path, requests: int, untouched: bool
                    ) -> TuneloopError:
    """The error to raise when the generator or judge failed mid-run (the backend's own error
    text kept): `--out` untouched, or what was done and how to resume."""
    if untouched:
        return type(exc)(f"{exc.what}; no request was answered, so nothing was written and "
                         f"{out} is as it was", where=exc.where, fix=exc.fix)
    return type(exc)(f"{exc.what}; the run stopped after {requests} answered request(s). "
                     f"Everything so far is kept in {out} (stats.json: stopped \"error\")",
                     where=exc.where, fix=(exc.fix + "; then " if exc.fix else "") +
                     "rerun the same command to resume: answered requests come from the cache")


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
    """Append-only JSONL with fsync per row; on reopen, existing rows are replayed, not rewritten.

    `redecided(row)` marks rows that a rerun may decide differently on purpose (self-instruct's
    `over_target`: with a larger --target those tasks are expanded instead). They are only ever
    the last rows of a file, so on reopen that tail is cut and the replay writes it again (or
    writes what the new limits decide).
    """

    def __init__(self, path: Path, redecided: Callable[[dict[str, Any]], bool] | None = None):
        self.path = path
        self.existing: list[str] = []
        if path.exists():
            data = path.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]  # a kill mid-write leaves a torn last line
            # split at "\n" only: a row's text may hold U+2028 and friends (ensure_ascii=False)
            lines = complete.decode("utf-8").split("\n")[:-1]
            while redecided is not None and lines and redecided(json.loads(lines[-1])):
                lines.pop()
            keep = len("".join(line + "\n" for line in lines).encode("utf-8"))
            if keep != len(data):
                with open(path, "r+b") as fh:
                    fh.truncate(keep)
            self.existing = lines
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
    """One answered request: the text, its id (the cache key's prefix) and, for a scored
    request, the tokens with their log-probabilities (None where the backend gave none)."""

    text: str
    request_id: str
    tokens: tuple[TokenChoice, ...] | None = None


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

    def run(self, kind: str, prompts: list[Messages], params: GenParams,
            top_logprobs: int | None = None) -> list[Reply]:
        """Answer all prompts (raises BudgetSpent, sending nothing, if they do not fit).

        With `top_logprobs`, the replies carry token log-probabilities where the backend gives
        them (`backends.scored_generate`; cached under their own key).
        """
        room = self.room()
        if room is not None and len(prompts) > room:
            raise BudgetSpent
        if not prompts:
            return []
        unique: dict[str, Messages] = {}  # the same prompt twice in a group is sent once
        for p in prompts:
            unique.setdefault(json.dumps(p, sort_keys=True), p)
        todo = list(unique.values())
        # the identity the cache keys scored answers by (see CachedGenerator.generate_scored)
        ident = self.name if top_logprobs is None else f"{self.name}|top_logprobs={top_logprobs}"

        def ask(batch: list[Messages]) -> list[Scored]:
            if top_logprobs is None:
                return [Scored(t, None) for t in self.generator.generate(batch, params)]
            return scored_generate(self.generator, batch, params, top_logprobs)

        cache = getattr(self.generator, "cache", None)
        if cache is not None:  # what this call will send, counted before sending
            keys = [cache_key(ident, p, params) for p in todo]
            self.sent += len(set(keys) - set(cache.get_many(keys)))
        if self.concurrency and len(todo) > 1:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo))) as pool:
                answers = list(pool.map(lambda p: ask([p])[0], todo))
        else:
            answers = ask(todo)
        by_key = dict(zip(unique.keys(), answers))
        scored = [by_key[json.dumps(p, sort_keys=True)] for p in prompts]
        self.count += len(prompts)
        self.budget.used += len(prompts)
        self.by_kind[kind] = self.by_kind.get(kind, 0) + len(prompts)
        return [Reply(a.text, "req-" + cache_key(ident, p, params)[:16], a.tokens)
                for a, p in zip(scored, prompts)]


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
        self.rejects = Appender(self.out / "rejects.jsonl",
                                redecided=lambda row: row.get("reason") == "over_target")

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
