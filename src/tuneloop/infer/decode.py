"""The one decode loop: prefill, KV cache, sampling, stop handling, finish reasons.

`infer.generate` (batched and streaming) and `serve`'s engine both hand a batch of `Row`s to
`Decoder.run`, so every generating path shares one implementation of:

- prefill of left-padded prompts (positions from the attention mask, logits of the last token
  only), then one token per step with a `DynamicCache`; finished rows leave the batch;
- a shared prompt prefix computed once: rows whose prompts start with the same tokens (a system
  prompt, a few-shot block, a judge template) reuse one batch-1 KV cache of that prefix, and only
  their suffixes are prefilled. The decoder keeps the last prefix, so later batches (and, for a
  long-lived decoder such as serve's, later requests) that share it skip it too;
- greedy or temperature + nucleus sampling (seeded with its own generator);
- per row: end-of-turn ids, stop strings (`stops.StopText`, with the streaming hold-back),
  `max_tokens`, the model's context length, and listeners for streamed text;
- log-probabilities, from the same logits that pick the tokens (no second pass): per generated
  token its log-probability and the `top_logprobs` most likely alternatives (`Row.logprobs`),
  and with `Row.echo` the same for every prompt token after the first (the prefill then keeps
  all positions' logits, and the batch skips the shared prefix, whose logits are not computed).
  Log-probabilities are the model's own (log-softmax of the raw logits), before temperature or
  top_p. `Row.generate=False` scores the prompt only (OpenAI's `max_tokens: 0` with `echo`).
"""

from __future__ import annotations

import copy
import inspect
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tuneloop.infer.params import GenParams
from tuneloop.infer.stops import REPLACEMENT, StopText

PREFIX_MIN_TOKENS = 32  # shorter shared prefixes are not worth a separate forward pass


class TokenLogprob:
    """One token's log-probability and the most likely alternatives at its position."""

    __slots__ = ("id", "logprob", "top")

    def __init__(self, id: int, logprob: float, top: list[tuple[int, float]]):
        self.id = id
        self.logprob = logprob
        self.top = top  # (token id, log-probability), most likely first

    def __repr__(self) -> str:
        return f"TokenLogprob({self.id}, {self.logprob:.4f}, top={self.top})"


class Row:
    """Decoding state of one sequence: its prompt, its tokens, its text and why it ended."""

    def __init__(self, prompt_ids: Sequence[int], params: GenParams, *,
                 on_text: Callable[[str], None] | None = None,
                 on_finish: Callable[[str], None] | None = None,
                 logprobs: int | None = None, echo: bool = False, generate: bool = True):
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.on_text = on_text
        self.on_finish = on_finish
        self.ids: list[int] = []  # generated ids, the end-of-turn id excluded
        self.n_tokens = 0  # tokens generated, the end-of-turn id included
        self.finish: str | None = None  # "stop" | "length"
        self.stops = StopText(params.stop)
        # Log-probabilities: None = not wanted, k = the chosen token's plus the top k.
        self.logprobs = logprobs
        self.echo = echo  # also score the prompt tokens (the first has none: None)
        self.generate = generate  # False: score the prompt, generate nothing
        self.token_logprobs: list[TokenLogprob] = []  # one per id in `ids`
        self.token_ends: list[int] = []  # text length after each id in `ids` (with logprobs)
        self.prompt_logprobs: list[TokenLogprob | None] = []  # with echo: one per prompt id
        self.stop_logprob: TokenLogprob | None = None  # the end-of-turn id's, if it ended so
        self._taken = 0  # token_logprobs already handed out by take_logprobs()

    @property
    def live(self) -> bool:
        """Decode the text every step? Only when someone needs it before the end."""
        return bool(self.params.stop) or self.on_text is not None or self.logprobs is not None

    def take_logprobs(self, final: bool = False) -> list[TokenLogprob]:
        """Log-probabilities of the tokens whose text has been released and not yet taken.

        While streaming, a token counts as released once all of its text was emitted; at the end
        (`final`), every token that put any text into the final (stop-cut) text.
        """
        if self.logprobs is None:
            return []
        limit = len(self.text) if final else self.stops.emitted
        n = self._taken
        while n < len(self.token_logprobs):
            start = self.token_ends[n - 1] if n else 0
            end = self.token_ends[n]
            if not (end <= limit or (final and start < limit)):
                break
            n += 1
        out = self.token_logprobs[self._taken:n]
        self._taken = n
        return out

    def visible_logprobs(self) -> list[TokenLogprob]:
        """Log-probabilities of the tokens of the final text (those cut by a stop are left out)."""
        n = 0
        limit = len(self.text)
        while n < len(self.token_logprobs):
            start = self.token_ends[n - 1] if n else 0
            if not (self.token_ends[n] <= limit or start < limit):
                break
            n += 1
        return self.token_logprobs[:n]

    @property
    def text(self) -> str:
        """The completion text so far (cut before a stop string)."""
        return self.stops.text

    def _emit(self, piece: str) -> None:
        if piece and self.on_text is not None:
            self.on_text(piece)


class Tracker:
    """Applies each new token to its row: end-of-turn ids, stop strings, length, streaming."""

    def __init__(self, tokenizer: Any, stop_ids: set[int]):
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids

    def advance(self, row: Row, tok: int, logprob: TokenLogprob | None = None) -> None:
        """Add one generated token (and its log-probability, if the row wants them)."""
        row.n_tokens += 1
        if tok in self.stop_ids:
            row.stop_logprob = logprob
            self.end(row, "stop")  # end-of-turn / EOS: counted, not part of the text
            return
        row.ids.append(tok)
        if row.live:
            full = self._decode(row)
            if logprob is not None:
                row.token_logprobs.append(logprob)
                row.token_ends.append(len(full.rstrip(REPLACEMENT)))
            row._emit(row.stops.update(full))
            if row.stops.stopped:
                self.end(row, "stop")
                return
        if row.n_tokens >= row.params.max_tokens:
            self.end(row, "length")

    def end(self, row: Row, reason: str) -> None:
        """Finish a row: decode its final text, release what streaming held back, notify."""
        if row.finish is not None:
            return
        if not row.stops.stopped:
            row._emit(row.stops.close(self._decode(row)))
            if row.stops.stopped:  # a stop string found only in the final decode
                reason = "stop"
        row.finish = reason
        if row.on_finish is not None:
            row.on_finish(reason)

    def _decode(self, row: Row) -> str:
        return self.tokenizer.decode(row.ids, skip_special_tokens=True)


def common_length(first: Sequence[int], others: Sequence[Sequence[int]], limit: int) -> int:
    """Length of the token prefix `first` shares with every one of `others` (at most limit)."""
    n = min(limit, len(first))
    for other in others:
        n = min(n, len(other))
        k = 0
        while k < n and other[k] == first[k]:
            k += 1
        n = k
    return n


def cache_keyword(model: Any) -> str:
    """The forward() keyword for the KV cache: `cache` in newer transformers 5.x releases."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT
    try:
        names = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in names else "past_key_values"


def cache_for_rows(cache: Any, rows: int) -> Any:
    """A copy of a one-row KV cache (a shared prefix) for `rows` rows; the original stays intact
    for the next batch."""
    copied = copy.deepcopy(cache)
    if rows > 1:
        copied.batch_repeat_interleave(rows)
    return copied


class Decoder:
    """Runs batches of rows through one model; keeps the last shared-prefix KV cache."""

    def __init__(self, model: Any, tokenizer: Any, stop_token_ids: Sequence[int], *,
                 pad_id: int | None = None, share_prefix: bool = True,
                 prefix_min_tokens: int = PREFIX_MIN_TOKENS):
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = {int(i) for i in stop_token_ids}
        if pad_id is None:
            pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else min(
                self.stop_ids, default=0)
        self.pad_id = int(pad_id)
        # A sliding-window cache cannot be cropped to a shorter shared prefix: no sharing there.
        text_cfg = getattr(model, "config", None)
        sliding = getattr(text_cfg, "sliding_window", None) if text_cfg is not None else None
        self.share_prefix = share_prefix and not sliding
        self.prefix_min_tokens = prefix_min_tokens
        cfg = getattr(model, "config", None)
        limit = getattr(cfg, "max_position_embeddings", None)
        self.context_length: int | None = limit if isinstance(limit, int) else None
        self.tracker = Tracker(tokenizer, self.stop_ids)
        self._cache_kw = cache_keyword(model)
        self._prefix: tuple[list[int], Any] | None = None  # (token ids, batch-1 DynamicCache)
        self._lock = threading.Lock()
        self.prefix_tokens_reused = 0  # prompt tokens not recomputed thanks to the prefix

    # -- the loop ------------------------------------------------------------------------------
    def run(self, rows: list[Row]) -> Iterator[None]:
        """Decode `rows` together; yields after every step (streaming consumers pull here)."""
        import torch

        if not rows:
            return
        params = rows[0].params
        if any(r.params.sampling_key() != params.sampling_key() for r in rows):
            raise ValueError("rows in one batch must share temperature, top_p and seed")
        device = next(self.model.parameters()).device
        generator = None
        if not params.greedy and params.seed is not None:
            generator = torch.Generator(device=device).manual_seed(params.seed)
        with self._lock, torch.inference_mode():
            logits, cache, mask, pos = self._prefill(rows, device)
            active = list(rows)
            if not all(r.generate for r in rows):  # prompt scoring only: no token to pick
                for row in rows:
                    if not row.generate:
                        self.tracker.end(row, "length")
                keep = [i for i, row in enumerate(active) if row.finish is None]
                if not keep:
                    yield
                    return
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                logits, mask, pos = logits[index], mask[index], pos[index]
                active = [active[i] for i in keep]
            while True:
                toks = self._pick(logits, params, generator)
                chosen = self._logprobs(logits, toks, [r.logprobs for r in active])
                for row, tok, lp in zip(active, toks.tolist(), chosen):
                    self.tracker.advance(row, tok, lp)
                    if (row.finish is None and self.context_length is not None
                            and len(row.prompt_ids) + row.n_tokens >= self.context_length):
                        self.tracker.end(row, "length")
                yield
                keep = [i for i, row in enumerate(active) if row.finish is None]
                if not keep:
                    return
                if len(keep) < len(active):  # finished rows leave the batch
                    index = torch.tensor(keep, device=device)
                    cache.batch_select_indices(index)
                    mask, pos, toks = mask[index], pos[index], toks[index]
                    active = [active[i] for i in keep]
                mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
                out = self.model(input_ids=toks[:, None], attention_mask=mask,
                                 position_ids=pos[:, None], use_cache=True,
                                 **{self._cache_kw: cache})  # the cache grows in place
                logits = out.logits[:, -1, :]
                pos = pos + 1

    def decode(self, rows: list[Row]) -> list[Row]:
        """Run `rows` to completion; returns them, finished."""
        for _ in self.run(rows):
            pass
        return rows

    # -- pieces ------------------------------------------------------------------------------
    @staticmethod
    def _logprobs(logits: Any, toks: Any, wanted: list[int | None]) -> list[TokenLogprob | None]:
        """Each wanting row's log-probability of its picked token (+ its top k), same logits."""
        if all(k is None for k in wanted):
            return [None] * len(wanted)
        index = [i for i, k in enumerate(wanted) if k is not None]
        logp = logits[index].float().log_softmax(dim=-1)
        picked = toks[index]
        chosen = logp.gather(-1, picked[:, None]).squeeze(-1).tolist()
        k_max = max(wanted[i] or 0 for i in index)
        top_v, top_i = logp.topk(k_max, dim=-1) if k_max else (None, None)
        out: list[TokenLogprob | None] = [None] * len(wanted)
        for j, i in enumerate(index):
            k = wanted[i] or 0
            top = (list(zip(top_i[j, :k].tolist(), top_v[j, :k].tolist())) if k else [])
            out[i] = TokenLogprob(int(picked[j]), chosen[j], top)
        return out

    @staticmethod
    def _prompt_logprobs(row: Row, logits: Any) -> None:
        """Log-probabilities of a row's prompt tokens from its prefill logits (positions 0..n-1).

        `logits[t]` predicts prompt token t+1; the first prompt token has none (None).
        """
        ids = row.prompt_ids
        k = row.logprobs or 0
        out: list[TokenLogprob | None] = [None]
        if len(ids) > 1:
            import torch

            logp = logits[: len(ids) - 1].float().log_softmax(dim=-1)
            nxt = torch.tensor(ids[1:], device=logp.device)
            chosen = logp.gather(-1, nxt[:, None]).squeeze(-1).tolist()
            top_v, top_i = logp.topk(k, dim=-1) if k else (None, None)
            for t, tok in enumerate(ids[1:]):
                top = list(zip(top_i[t].tolist(), top_v[t].tolist())) if k else []
                out.append(TokenLogprob(tok, chosen[t], top))
        row.prompt_logprobs = out

    def _prefill(self, rows: list[Row], device: Any) -> tuple[Any, Any, Any, Any]:
        """Forward the prompts; (last-token logits, cache, attention mask, next positions)."""
        import torch

        prompts = [r.prompt_ids for r in rows]
        echo = any(r.echo for r in rows)
        # Prompt log-probabilities need every position's logits: no shared prefix then.
        start, cache = (0, None) if echo else self._prefix_cache(prompts, len(rows))
        tails = [p[start:] for p in prompts]
        width = max(len(t) for t in tails)
        # [prefix][left padding][suffix]: every row's last prompt token is in the same column,
        # positions count only real tokens, and the mask hides the padding.
        ids = torch.tensor([[self.pad_id] * (width - len(t)) + t for t in tails], device=device)
        tail_mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in tails],
                                 device=device)
        pos = start + (tail_mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([tail_mask.new_ones((len(rows), start)), tail_mask], dim=1)
        if cache is None:
            cache = self._new_cache()
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                         logits_to_keep=0 if echo else 1, **{self._cache_kw: cache})
        if echo:
            for i, (row, tail) in enumerate(zip(rows, tails)):
                if row.echo:  # this row's real tokens are its last len(tail) columns
                    self._prompt_logprobs(row, out.logits[i, width - len(tail):])
        next_pos = start + tail_mask.sum(-1)
        return out.logits[:, -1, :], cache, mask, next_pos

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _prefix_cache(self, prompts: list[list[int]], batch: int) -> tuple[int, Any]:
        """(length of the shared prefix already in the cache, cache for `batch` rows) or (0, None)."""
        if not self.share_prefix:
            return 0, None
        # Every row keeps at least one prompt token to prefill: its logits start the answer.
        limit = min(len(p) for p in prompts) - 1
        shared = common_length(prompts[0], prompts[1:], limit)
        if shared < self.prefix_min_tokens:
            return 0, None
        known, cache = self._prefix if self._prefix is not None else ([], None)
        self._prefix = None  # mutated below: never keep a half-extended cache after an error
        reuse = common_length(known, [prompts[0][:shared]], shared)
        if reuse < self.prefix_min_tokens or cache is None:
            reuse, cache = 0, self._new_cache()
        elif reuse < len(known):
            cache.crop(reuse - len(known))  # keep only the part this batch shares
        if shared > reuse:  # compute the rest of the shared prefix once, for one row
            import torch

            device = next(self.model.parameters()).device
            ext = torch.tensor([prompts[0][reuse:shared]], device=device)
            self.model(input_ids=ext, attention_mask=torch.ones((1, shared), dtype=torch.long,
                                                                 device=device),
                       position_ids=torch.arange(reuse, shared, device=device)[None, :],
                       use_cache=True, logits_to_keep=1, **{self._cache_kw: cache})
        self._prefix = (list(prompts[0][:shared]), cache)
        self.prefix_tokens_reused += shared * batch - (shared - reuse)
        return shared, cache_for_rows(cache, batch)

    @staticmethod
    def _pick(logits: Any, params: GenParams, generator: Any) -> Any:
        """The next token of each row: argmax, or a temperature + nucleus (top_p) sample."""
        import torch

        if params.greedy:
            return logits.argmax(dim=-1)
        # The max is subtracted before dividing: with a tiny temperature (1e-45 is a valid float)
        # logits / t overflow to +inf and inf - inf inside softmax is NaN; this way the top token
        # scores exactly 0 and the others at worst -inf, so the top token takes all the mass.
        logits = logits.float()
        scores = (logits - logits.max(dim=-1, keepdim=True).values) / params.temperature
        if params.top_p < 1.0:
            # Keep the smallest set of most likely tokens whose probability reaches top_p; the
            # most likely token always stays (a top_p below float32's range, e.g. 5e-278, is 0
            # once compared with float32 probabilities and would otherwise drop every token).
            sorted_scores, order = scores.sort(dim=-1, descending=True)
            probs = sorted_scores.softmax(dim=-1)
            drop = probs.cumsum(dim=-1) - probs >= params.top_p
            drop[..., 0] = False
            sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
            scores = torch.full_like(scores, float("-inf")).scatter(-1, order, sorted_scores)
        probs = scores.softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


__all__ = ["PREFIX_MIN_TOKENS", "Decoder", "Row", "TokenLogprob", "Tracker", "cache_for_rows",
           "cache_keyword", "common_length"]
