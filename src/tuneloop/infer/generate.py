"""Generation with the training template: batched, left-padded, KV cache, stops at end-of-turn.

Every generating path (eval, judge, chat, `tuneloop generate`, the local backend) goes through
here, so the prompt is always `Renderer.prompt_ids` (the template the model was trained with,
R15) and generation always stops at the renderer's end-of-turn ids (R14). The decoding itself
(prefill, KV cache, shared prefix, sampling, stop strings, finish reasons) is `infer.decode`,
which `tuneloop serve`'s engine drives too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tuneloop.data.render import Renderer
from tuneloop.errors import UsageError
from tuneloop.infer.decode import Decoder, Row, TokenLogprob
from tuneloop.infer.params import GenParams, ParamError, check_count
from tuneloop.models import load_model, model_template, resolve_model_ref
from tuneloop.progress import eta_progress


def load_for_generation(ref: str, device: str = "cpu") -> tuple[Any, Any, Any]:
    """(model in eval mode, tokenizer, renderer with the template the model was trained with)."""
    resolved = resolve_model_ref(ref)
    model, tokenizer = load_model(resolved, device=device)
    return model, tokenizer, Renderer(tokenizer, template=model_template(resolved))


@dataclass
class Generation:
    """One completion: its text, how many tokens were generated, and why it ended."""

    text: str
    n_tokens: int
    finish_reason: str  # "stop" (end-of-turn / stop string) | "length" (max_new_tokens)
    logprobs: list[TokenLogprob] | None = None  # with generate(logprobs=k): one per text token


# generate()/stream_generate() spell the GenParams fields as their keywords.
_KWARG_NAMES = {"max_tokens": "max_new_tokens"}


def gen_params(max_new_tokens: int, temperature: float, top_p: float, seed: int | None,
               stop: Sequence[str] | None) -> GenParams:
    """GenParams from generate()'s keywords; a bad value names the keyword (ParamError)."""
    try:
        return GenParams(max_new_tokens, temperature, top_p, seed, tuple(stop or ()))
    except ParamError as exc:
        raise exc.named(_KWARG_NAMES) from None


def _check_context(model: Any, encoded: list[list[int]]) -> None:
    """A prompt that alone fills the model's context cannot be answered: say which one."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not isinstance(limit, int):
        return
    for i, ids in enumerate(encoded):
        if len(ids) >= limit:
            raise UsageError(f"prompt {i + 1} is {len(ids)} tokens; the model's context is "
                             f"{limit}", fix="shorten that prompt (or its conversation history)")


def _result(row: Row) -> Generation:
    lps = row.visible_logprobs() if row.logprobs is not None else None
    return Generation(row.text, row.n_tokens, row.finish or "length", lps)


def conversation_ids(renderer: Any, tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Prompt ids of a conversation; a final assistant message is a prefix to continue.

    (The conversation up to it, with the generation prompt, then its text's tokens.)
    """
    if messages and messages[-1].get("role") == "assistant":
        head = renderer.prompt_ids(list(messages[:-1]))
        return head + tokenizer.encode(messages[-1]["content"], add_special_tokens=False)
    return renderer.prompt_ids(list(messages))


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
    share_prefix: bool = True,
    logprobs: int | None = None,
) -> list[Generation]:
    """Complete each conversation (list of messages); greedy when temperature == 0.

    Prompts that share a long token prefix (a system prompt, a few-shot block) compute it once
    (`share_prefix`; greedy outputs are the same either way). `logprobs=k` records each
    generated token's log-probability and its k most likely alternatives. A conversation that
    ends with an assistant message continues that message (see `conversation_ids`).
    """
    params = gen_params(max_new_tokens, temperature, top_p, seed, stop)
    check_count("batch_size", batch_size)
    if not prompts:
        return []
    encoded = [conversation_ids(renderer, tokenizer, list(messages)) for messages in prompts]
    _check_context(model, encoded)
    decoder = Decoder(model, tokenizer, renderer.stop_token_ids, share_prefix=share_prefix)
    # Longest first: similar lengths share a batch (less padding), and an out-of-memory shows up
    # on the first batch rather than the last.
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    rows = [Row(ids, params, logprobs=logprobs) for ids in encoded]
    with _progress_bar(len(prompts), "generating", enabled=progress) as advance:
        for start in range(0, len(order), batch_size):
            batch = [rows[i] for i in order[start:start + batch_size]]
            decoder.decode(batch)
            advance(len(batch))
    return [_result(row) for row in rows]


@contextlib.contextmanager
def _progress_bar(total: int, label: str, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar with ETA on stderr; call `advance(n)` inside the with-block."""
    progress = eta_progress(label, enabled=enabled)
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.update(task, advance=n)


class TokenStream:
    """Iterate to get text pieces as they are generated; afterwards .text/.n_tokens/.finish_reason.

    Decoding happens while you iterate (in your thread); a piece is never the start of a stop
    string that might still complete (see `stops.StopText`).
    """

    def __init__(self, decoder: Decoder, row: Row):
        self._decoder = decoder
        self._row = row
        self._pieces: list[str] = []
        row.on_text = self._pieces.append
        self.text = ""
        self.n_tokens = 0
        self.finish_reason = "length"

    def __iter__(self) -> Iterator[str]:
        steps = self._decoder.run([self._row])
        try:
            for _ in steps:
                while self._pieces:
                    piece = self._pieces.pop(0)
                    self.text += piece
                    yield piece
        finally:
            steps.close()  # a consumer that stops early frees the model for the next call
        self.n_tokens = self._row.n_tokens
        self.finish_reason = self._row.finish or "length"


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
    decoder: Decoder | None = None,
) -> TokenStream:
    """Generate one reply, yielding text pieces as tokens arrive.

    Pass the same `decoder` for every turn of a conversation: each prompt then starts with the
    previous one, whose KV cache it keeps (the shared prefix), so only the new turn is prefilled.
    """
    params = gen_params(max_new_tokens, temperature, top_p, seed, stop)
    prompt = renderer.prompt_ids(list(messages))
    _check_context(model, [prompt])
    decoder = decoder or Decoder(model, tokenizer, renderer.stop_token_ids)
    return TokenStream(decoder, Row(prompt, params))
