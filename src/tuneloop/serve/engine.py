"""The generation worker behind `tuneloop serve`: one thread, a queue, batches of compatible jobs.

HTTP handlers never touch the model. They submit a `Job` (prompt token ids + sampling params) and
await its future (or its event queue when streaming). One worker thread takes jobs in arrival
order and batches those with identical sampling parameters, up to `max_batch_size` rows, into one
left-padded `model.generate` call. Nothing is dropped: incompatible jobs wait for the next batch.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sampling:
    """Per-request sampling parameters; jobs batch together only when these are equal."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass
class Choice:
    """One finished completion."""

    text: str
    finish_reason: str  # "stop" | "length"
    n_tokens: int


@dataclass
class Job:
    """A request for `n` completions of one prompt; results arrive via `future` (and `events`)."""

    prompt_ids: list[int]
    sampling: Sampling
    n: int = 1
    # Streaming: called from the worker thread with ("delta", index, text) / ("finish", index,
    # reason) / ("error", -1, message); the app forwards these onto the event loop.
    on_event: Callable[[str, int, str], None] | None = None
    future: Future = field(default_factory=Future)
    submitted: float = field(default_factory=time.perf_counter)

    def batch_key(self) -> Any:
        """Jobs with equal keys share a batch; seeded jobs run alone so a seed is reproducible."""
        if self.sampling.seed is not None:
            return ("seeded", id(self))
        return self.sampling


class _Row:
    """Decoding state of one sequence in a batch: ids, text, whether and why it finished."""

    def __init__(self, job: Job, index: int):
        self.job = job
        self.index = index
        self.ids: list[int] = []
        self.text = ""
        self.sent = 0  # characters already streamed
        self.finish: str | None = None


class _Tracker:
    """A StoppingCriteria that sees every new token: end-of-turn ids, stop strings, streaming."""

    def __init__(self, rows: list[_Row], tokenizer: Any, stop_ids: set[int], prompt_len: int):
        self.rows = rows
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids
        self.prompt_len = prompt_len

    def __call__(self, input_ids: Any, scores: Any = None, **kwargs: Any) -> Any:
        import torch

        step = input_ids.shape[1] - self.prompt_len
        last = input_ids[:, -1].tolist()
        done = []
        for row, tok in zip(self.rows, last):
            if row.finish is None and step >= 1:
                self._advance(row, tok)
            done.append(row.finish is not None)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def _advance(self, row: _Row, tok: int) -> None:
        if tok in self.stop_ids:
            row.finish = "stop"  # end-of-turn / EOS: not part of the text
            self._flush(row, final=True)
            return
        row.ids.append(tok)
        row.text = self.tokenizer.decode(row.ids, skip_special_tokens=True)
        stops = row.job.sampling.stop
        for s in stops:
            cut = row.text.find(s)
            if cut != -1:
                row.text = row.text[:cut]
                row.finish = "stop"
                break
        if row.finish is None and len(row.ids) >= row.job.sampling.max_tokens:
            row.finish = "length"
        self._flush(row, final=row.finish is not None)

    def _flush(self, row: _Row, final: bool) -> None:
        """Stream the new text, holding back a possible stop-string prefix or partial UTF-8."""
        if row.job.on_event is None:
            return
        upto = len(row.text)
        if not final:
            end = upto - 1 if row.text.endswith("\ufffd") else upto
            hold = 0
            for stop in row.job.sampling.stop:
                for k in range(min(len(stop) - 1, end), 0, -1):
                    if row.text[:end].endswith(stop[:k]):
                        hold = max(hold, k)
                        break
            upto = end - hold
        if upto > row.sent:
            row.job.on_event("delta", row.index, row.text[row.sent:upto])
            row.sent = upto
        if final:
            row.job.on_event("finish", row.index, row.finish or "length")


class Engine:
    """Owns the model; a worker thread runs batched generation for queued jobs."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        stop_token_ids: list[int],
        *,
        max_batch_size: int = 8,
        context_length: int | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = {int(i) for i in stop_token_ids}
        self.max_batch_size = max(1, max_batch_size)
        cfg = getattr(model, "config", None)
        self.context_length = context_length or getattr(cfg, "max_position_embeddings", 2048)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.stop_ids, default=0)
        self._queue: queue.Queue[Job | None] = queue.Queue()  # unbounded: never drop a request
        self._pending: collections.deque[Job] = collections.deque()
        self._thread: threading.Thread | None = None
        self.batches_run = 0
        self.max_rows_seen = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="tuneloop-gen", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask the worker to finish the current batch and exit."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def submit(self, job: Job) -> Future:
        """Queue a job; its future resolves to (list[Choice], prompt_tokens)."""
        self._queue.put(job)
        return job.future

    def queued(self) -> int:
        """Jobs waiting (not yet in a running batch)."""
        return self._queue.qsize() + len(self._pending)

    # -- worker ----------------------------------------------------------------------------
    def _take(self) -> Job | None:
        if self._pending:
            return self._pending.popleft()
        return self._queue.get()

    def _drain(self) -> bool:
        """Move everything queued right now into the pending deque; False on shutdown."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return True
            if item is None:
                return False
            self._pending.append(item)

    def _loop(self) -> None:
        import torch

        torch.set_grad_enabled(False)
        alive = True
        while alive or self._pending:
            first = self._take()
            if first is None:
                alive = False
                continue
            alive = self._drain() and alive
            batch, rows = [first], first.n
            key = first.batch_key()
            keep: collections.deque[Job] = collections.deque()
            for job in self._pending:
                if job.batch_key() == key and rows + job.n <= self.max_batch_size:
                    batch.append(job)
                    rows += job.n
                else:
                    keep.append(job)  # stays in arrival order for the next batch
            self._pending = keep
            self._run(batch)

    def _run(self, batch: list[Job]) -> None:
        try:
            results = self._generate(batch)
        except Exception as exc:  # noqa: BLE001 - keep serving: fail these jobs, not the server (R25)
            for job in batch:
                if job.on_event is not None:
                    job.on_event("error", -1, f"generation failed: {exc}")
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        for job, choices in results:
            job.future.set_result((choices, len(job.prompt_ids)))

    def _generate(self, batch: list[Job]) -> list[tuple[Job, list[Choice]]]:
        import torch
        from transformers import StoppingCriteriaList

        rows = [_Row(job, i) for job in batch for i in range(job.n)]
        self.batches_run += 1
        self.max_rows_seen = max(self.max_rows_seen, len(rows))
        width = max(len(r.job.prompt_ids) for r in rows)
        # Left padding so every row's next token is at the same position.
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            p = r.job.prompt_ids
            ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, width - len(p):] = 1
        s = batch[0].sampling
        device = next(self.model.parameters()).device
        tracker = _Tracker(rows, self.tokenizer, self.stop_ids, width)
        kwargs: dict[str, Any] = {
            "max_new_tokens": s.max_tokens,
            "pad_token_id": self.pad_id,
            "eos_token_id": sorted(self.stop_ids),
            "stopping_criteria": StoppingCriteriaList([tracker]),
        }
        if s.temperature > 0:
            # OpenAI semantics: temperature + nucleus only (no top-k, which HF adds by default).
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if s.seed is not None:
            torch.manual_seed(s.seed)
        self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        for r in rows:
            if r.finish is None:  # generate ended without our tracker deciding (max length)
                r.finish = "length"
                tracker._flush(r, final=True)
        out: list[tuple[Job, list[Choice]]] = []
        for job in batch:
            mine = [r for r in rows if r.job is job]
            out.append((job, [Choice(r.text, r.finish or "length", len(r.ids)) for r in mine]))
        return out


def bridge_events(loop: asyncio.AbstractEventLoop, q: asyncio.Queue) -> Callable[..., None]:
    """A thread-safe `on_event` that forwards worker events onto an asyncio queue."""

    def emit(kind: str, index: int, payload: str) -> None:
        loop.call_soon_threadsafe(q.put_nowait, (kind, index, payload))

    return emit
