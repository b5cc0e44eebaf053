"""The generation worker behind `tuneloop serve`: one thread, a queue, batches of compatible jobs.

HTTP handlers never touch the model. They submit a `Job` (prompt token ids + `GenParams`) and
await its future (or its event queue when streaming). One worker thread takes jobs in arrival
order and batches those with the same temperature and top_p, up to `max_batch_size` rows, into
one run of `infer.decode.Decoder` -- the decode loop `infer.generate` uses (prefill, KV cache,
shared prefix, sampling, stop strings, finish reasons). Nothing is dropped: incompatible jobs
wait for the next batch.
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

from tuneloop.infer.decode import Decoder, Row, TokenLogprob
from tuneloop.infer.params import GenParams


@dataclass
class Choice:
    """One finished completion."""

    text: str
    finish_reason: str  # "stop" | "length"
    n_tokens: int
    # With Job.logprobs: one entry per token of `text`; with Job.echo: one per prompt token.
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None
    stop_logprob: TokenLogprob | None = None  # the end-of-turn token's (not part of the text)


@dataclass
class Job:
    """A request for `n` completions of one prompt; results arrive via `future` (and `events`)."""

    prompt_ids: list[int]
    sampling: GenParams
    n: int = 1
    # Log-probabilities (computed by the Decoder in the generating forward pass): None = none,
    # k = each token's own plus the top k; `echo` adds the prompt tokens'; `generate=False`
    # scores the prompt only (max_tokens 0).
    logprobs: int | None = None
    echo: bool = False
    generate: bool = True
    # Streaming: called from the worker thread with ("delta", index, text) / ("finish", index,
    # reason) / ("error", -1, message), and with logprobs ("logprobs", index, [TokenLogprob])
    # just before the delta (or finish) that releases those tokens' text; the app forwards
    # these onto the event loop.
    on_event: Callable[[str, int, Any], None] | None = None
    future: Future = field(default_factory=Future)
    submitted: float = field(default_factory=time.perf_counter)

    def batch_key(self) -> Any:
        """Jobs with equal keys share a batch; seeded jobs run alone so a seed is reproducible."""
        if self.sampling.seed is not None:
            return ("seeded", id(self))
        return self.sampling.sampling_key()  # length and stop strings are per row


class _Row(Row):
    """One of a job's `n` sequences; its streamed text and finish go to the job's events."""

    def __init__(self, job: Job, index: int):
        on_event = job.on_event
        super().__init__(
            job.prompt_ids, job.sampling,
            on_text=None if on_event is None else self._text,
            on_finish=None if on_event is None else self._finish,
            logprobs=job.logprobs, echo=job.echo, generate=job.generate)
        self.job = job
        self.index = index

    def _text(self, text: str) -> None:
        self._send_logprobs(final=False)
        self.job.on_event("delta", self.index, text)  # type: ignore[misc]

    def _finish(self, why: str) -> None:
        self._send_logprobs(final=True)
        self.job.on_event("finish", self.index, why)  # type: ignore[misc]

    def _send_logprobs(self, final: bool) -> None:
        taken = self.take_logprobs(final=final)
        if taken:
            self.job.on_event("logprobs", self.index, taken)  # type: ignore[misc]


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
        # The same decode loop as infer.generate; it lives as long as the server, so a prompt
        # prefix shared by requests (a system prompt) stays computed between batches.
        self.decoder = Decoder(model, tokenizer, stop_token_ids)
        self.max_batch_size = max(1, max_batch_size)
        self.context_length = context_length or self.decoder.context_length or 2048
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
        rows = [_Row(job, i) for job in batch for i in range(job.n)]
        self.batches_run += 1
        self.max_rows_seen = max(self.max_rows_seen, len(rows))
        self.decoder.decode(rows)
        out: list[tuple[Job, list[Choice]]] = []
        for job in batch:
            mine = [r for r in rows if r.job is job]
            out.append((job, [Choice(r.text, r.finish or "length", r.n_tokens,
                                     r.visible_logprobs() if job.logprobs is not None else None,
                                     r.prompt_logprobs if job.echo else None,
                                     r.stop_logprob)
                              for r in mine]))
        return out


def bridge_events(loop: asyncio.AbstractEventLoop, q: asyncio.Queue) -> Callable[..., None]:
    """A thread-safe `on_event` that forwards worker events onto an asyncio queue."""

    def emit(kind: str, index: int, payload: Any) -> None:
        loop.call_soon_threadsafe(q.put_nowait, (kind, index, payload))

    return emit
