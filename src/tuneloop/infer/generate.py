"""Generation with the training template: batched, left-padded, KV cache, stops at end-of-turn.

Every generating path (eval, judge, chat, `tuneloop generate`, the local backend) goes through
here, so the prompt is always `Renderer.prompt_ids` (the template the model was trained with,
R15) and generation always stops at the renderer's end-of-turn ids (R14).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tuneloop.errors import UsageError


def load_for_generation(ref: str, device: str = "cpu") -> tuple[Any, Any, Any]:
    """(model in eval mode, tokenizer, renderer with the template the model was trained with)."""
    from tuneloop.data.render import Renderer
    from tuneloop.models import load_model, model_template, resolve_model_ref

    resolved = resolve_model_ref(ref)
    model, tokenizer = load_model(resolved, device=device)
    return model, tokenizer, Renderer(tokenizer, template=model_template(resolved))


@dataclass
class Generation:
    """One completion: its text, how many tokens were generated, and why it ended."""

    text: str
    n_tokens: int
    finish_reason: str  # "stop" (end-of-turn / stop string) | "length" (max_new_tokens)


def _check_params(max_new_tokens: int, temperature: float, top_p: float, batch_size: int) -> None:
    if max_new_tokens < 1:
        raise UsageError(f"max_new_tokens must be ≥ 1, got {max_new_tokens}",
                         fix="pass --max-new-tokens 1 or more")
    if temperature < 0:
        raise UsageError(f"temperature must be ≥ 0, got {temperature}",
                         fix="use 0 for greedy decoding or a positive value to sample")
    if not 0 < top_p <= 1:
        raise UsageError(f"top_p must be in (0, 1], got {top_p}", fix="e.g. --top-p 0.9")
    if batch_size < 1:
        raise UsageError(f"batch_size must be ≥ 1, got {batch_size}", fix="pass --batch-size 1+")


def _check_context(model: Any, encoded: list[list[int]]) -> None:
    """A prompt that alone fills the model's context cannot be answered: say which one."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not isinstance(limit, int):
        return
    for i, ids in enumerate(encoded):
        if len(ids) >= limit:
            raise UsageError(f"prompt {i + 1} is {len(ids)} tokens; the model's context is "
                             f"{limit}", fix="shorten that prompt (or its conversation history)")


def _generation_config(renderer: Any, tokenizer: Any, max_new_tokens: int, temperature: float,
                       top_p: float) -> Any:
    """An explicit config, so a model's own generation defaults never change our decoding."""
    from transformers import GenerationConfig

    sample = temperature > 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        temperature=temperature if sample else None,
        top_p=top_p if sample else None,
        top_k=None,
        eos_token_id=list(renderer.stop_token_ids),
        pad_token_id=pad,
        use_cache=True,
    )


def _stop_string_criteria(tokenizer: Any, stop: Sequence[str], start: int) -> Any:
    """Per-row stopping when a stop string appears in the newly generated text."""
    import torch
    from transformers import StoppingCriteria

    longest = max(len(s) for s in stop)

    class StopStrings(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = []
            for row in input_ids:
                # Only the tail can hold a new match; decoding a few tokens per step is cheap.
                tail = tokenizer.decode(row[max(start, len(row) - longest - 8):],
                                        skip_special_tokens=True)
                done.append(any(s in tail for s in stop))
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StopStrings()


def _finish(tokenizer: Any, new_ids: list[int], stop_ids: set[int], pad_id: int | None,
            stop: Sequence[str] | None, max_new_tokens: int) -> Generation:
    """Cut a row of generated ids at its end-of-turn / stop string and decode it."""
    for k, tid in enumerate(new_ids):
        if tid in stop_ids:
            text = tokenizer.decode(new_ids[:k], skip_special_tokens=True)
            return _cut_stop(Generation(text, k + 1, "stop"), stop)
    while new_ids and pad_id is not None and new_ids[-1] == pad_id:
        new_ids = new_ids[:-1]  # padding after a row stopped on a stop string
    text = tokenizer.decode(new_ids, skip_special_tokens=True)
    reason = "length" if len(new_ids) >= max_new_tokens else "stop"
    return _cut_stop(Generation(text, len(new_ids), reason), stop)


def _cut_stop(gen: Generation, stop: Sequence[str] | None) -> Generation:
    if not stop:
        return gen
    hits = [gen.text.find(s) for s in stop if s and s in gen.text]
    if hits:
        return Generation(gen.text[: min(hits)], gen.n_tokens, "stop")
    return gen


def generate(
    model: Any,
    tokenizer: Any,
    renderer: Any,
    prompts: list[list[dict[str, str]]],
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    batch_size: int = 8,
    stop: Sequence[str] | None = None,
    progress: bool = True,
) -> list[Generation]:
    """Complete each conversation (list of messages); greedy when temperature == 0."""
    import torch

    _check_params(max_new_tokens, temperature, top_p, batch_size)
    if not prompts:
        return []
    stop = [s for s in (stop or []) if s]
    if seed is not None:
        torch.manual_seed(seed)
    encoded = [renderer.prompt_ids(list(messages)) for messages in prompts]
    _check_context(model, encoded)
    # Longest first: similar lengths share a batch (less padding), and an out-of-memory shows up
    # on the first batch rather than the last.
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    config = _generation_config(renderer, tokenizer, max_new_tokens, temperature, top_p)
    pad_id = config.pad_token_id
    stop_ids = set(renderer.stop_token_ids)
    device = next(model.parameters()).device
    results: list[Generation | None] = [None] * len(prompts)
    with _progress_bar(len(prompts), "generating", enabled=progress) as advance:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            width = max(len(encoded[i]) for i in batch)
            # Left padding: every row's last prompt token sits at the same position, so the new
            # tokens line up; the attention mask (and positions derived from it) hide the pads.
            ids = torch.tensor([[pad_id] * (width - len(encoded[i])) + encoded[i] for i in batch])
            mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i])
                                 for i in batch])
            criteria = None
            if stop:
                from transformers import StoppingCriteriaList

                criteria = StoppingCriteriaList([_stop_string_criteria(tokenizer, stop, width)])
            with torch.inference_mode():
                out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                     generation_config=config, stopping_criteria=criteria)
            for row, i in enumerate(batch):
                new = out[row, width:].tolist()
                results[i] = _finish(tokenizer, new, stop_ids, pad_id, stop, max_new_tokens)
            advance(len(batch))
    return [r for r in results if r is not None]


@contextlib.contextmanager
def _progress_bar(total: int, label: str, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar with ETA on stderr; call `advance(n)` inside the with-block."""
    from tuneloop.progress import eta_progress

    progress = eta_progress(label, enabled=enabled)
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.update(task, advance=n)


class TokenStream:
    """Iterate to get text pieces as they are generated; afterwards .text/.n_tokens/.finish_reason."""

    def __init__(self, pieces: Iterator[str], thread: threading.Thread, state: dict[str, Any],
                 stop: Sequence[str]):
        self._pieces = pieces
        self._thread = thread
        self._state = state
        self._stop = list(stop)
        self.text = ""
        self.n_tokens = 0
        self.finish_reason = "length"

    def __iter__(self) -> Iterator[str]:
        held = ""  # text that might be the start of a stop string: not shown until it can't be
        keep = max((len(s) for s in self._stop), default=1) - 1
        stopped = False
        for piece in self._pieces:
            if stopped:
                continue  # drain so the generating thread can finish
            held += piece
            hits = [held.find(s) for s in self._stop if s in held]
            if hits:
                out, stopped = held[: min(hits)], True
                held = ""
            else:
                cut = len(held) - keep if keep else len(held)
                out, held = held[:max(cut, 0)], held[max(cut, 0):]
            if out:
                self.text += out
                yield out
        self._thread.join()
        if "error" in self._state:
            raise self._state["error"]
        if held and not stopped:
            self.text += held
            yield held
        self.n_tokens = self._state.get("n_tokens", 0)
        self.finish_reason = "stop" if stopped else self._state.get("finish_reason", "length")


def stream_generate(
    model: Any,
    tokenizer: Any,
    renderer: Any,
    messages: list[dict[str, str]],
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop: Sequence[str] | None = None,
) -> TokenStream:
    """Generate one reply, yielding text pieces as tokens arrive (TextIteratorStreamer)."""
    import torch
    from transformers import TextIteratorStreamer

    _check_params(max_new_tokens, temperature, top_p, 1)
    if seed is not None:
        torch.manual_seed(seed)
    prompt = renderer.prompt_ids(list(messages))
    _check_context(model, [prompt])
    device = next(model.parameters()).device
    ids = torch.tensor([prompt], device=device)
    config = _generation_config(renderer, tokenizer, max_new_tokens, temperature, top_p)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True,
                                    timeout=600)
    state: dict[str, Any] = {}
    stop_ids = set(renderer.stop_token_ids)

    def run() -> None:
        try:
            with torch.inference_mode():
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                     generation_config=config, streamer=streamer)
            gen = _finish(tokenizer, out[0, len(prompt):].tolist(), stop_ids,
                          config.pad_token_id, None, max_new_tokens)
            state["n_tokens"], state["finish_reason"] = gen.n_tokens, gen.finish_reason
        except Exception as exc:  # noqa: BLE001 - re-raised in the consumer's thread
            state["error"] = exc
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return TokenStream(iter(streamer), thread, state, [s for s in (stop or []) if s])
