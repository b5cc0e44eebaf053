"""Held-out loss and perplexity for any model reference on any dataset.

Examples are rendered with the same Renderer and assistant-only mask as training, and the loss is
computed by the trainer's own `evaluate_loss` (token-weighted mean over trained tokens), so a
number here equals the eval loss the trainer logs for the same rows.
"""

from __future__ import annotations

import math
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tuneloop.data.check import load_clean_records
from tuneloop.data.records import Record
from tuneloop.errors import EvalError
from tuneloop.index import record_eval
from tuneloop.infer.generate import load_for_generation
from tuneloop.models import renderer_for, run_dir_of
from tuneloop.train import evaluate_loss

IGNORE_INDEX = -100


@dataclass
class HeldoutLoss:
    """Token-weighted mean loss over trained tokens, its perplexity, and what was counted."""

    loss: float
    perplexity: float
    n_tokens: int
    n_examples: int
    dropped: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain dict (compare.json, summary files)."""
        return {"loss": self.loss, "perplexity": self.perplexity, "n_tokens": self.n_tokens,
                "n_examples": self.n_examples, "dropped": dict(self.dropped)}


def _spans(labels: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of trained (label != -100) positions."""
    spans, start = [], None
    for i, label in enumerate(labels):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(labels)))
    return spans


def keep_last_turns(example: Any, n_turns: int) -> Any:
    """Mask every trained span but the last `n_turns` (few-shot answers are prompt, not target)."""
    spans = _spans(example.labels)
    if len(spans) <= n_turns:
        return example
    labels = list(example.labels)
    for a, b in spans[: len(spans) - n_turns]:
        labels[a:b] = [IGNORE_INDEX] * (b - a)
    return replace(example, labels=labels, n_trained=sum(x != IGNORE_INDEX for x in labels))


def render_heldout(
    renderer: Any, records: list[Any], *, system_prompt: str | None = None,
    few_shot: list[list[dict[str, str]]] | None = None,
) -> tuple[list[Any], Counter]:
    """Render records as training does; with a prompt variant, add system/few-shot, mask them."""
    examples, dropped = [], Counter()
    for record in records:
        own_turns = 0
        if record.messages is not None and (system_prompt or few_shot):
            msgs = [dict(m) for m in record.messages]
            has_system = any(m["role"] == "system" for m in msgs)
            own_turns = sum(m["role"] == "assistant" for m in msgs)
            head = [m for m in msgs if m["role"] == "system"]
            body = [m for m in msgs if m["role"] != "system"]
            if system_prompt and not has_system:
                head = [{"role": "system", "content": system_prompt}]
            shots = [dict(t) for ex in few_shot or [] for t in ex]
            record = Record(messages=head + shots + body, source=record.source, line=record.line)
        result = renderer.render(record)
        ex = result.example
        if ex is not None and own_turns and few_shot:
            ex = keep_last_turns(ex, own_turns)
        if ex is None or ex.n_trained <= 0:
            dropped[result.reason or "no_trainable_tokens"] += 1
            continue
        examples.append(ex)
    return examples, dropped


def heldout_loss(
    model: Any, tokenizer: Any, renderer: Any, records: list[Any], *,
    system_prompt: str | None = None, few_shot: list[list[dict[str, str]]] | None = None,
    batch_size: int = 8, progress: bool = True,
) -> HeldoutLoss:
    """Held-out loss/perplexity of a loaded model on records (same render + mask as training)."""
    examples, dropped = render_heldout(renderer, records, system_prompt=system_prompt,
                                       few_shot=few_shot)
    if not examples:
        reasons = ", ".join(f"{k}: {v}" for k, v in dropped.items()) or "no rows"
        raise EvalError(f"no held-out example could be rendered ({reasons})",
                        fix="raise --max-length or check the data with `tuneloop data check`")
    from rich.console import Console

    console = Console(stderr=True)
    # evaluate_loss's own bar is off: a spinner is enough, and this keeps the loss path
    # independent of the trainer's progress-bar columns
    spinner = (console.status(f"held-out loss on {len(examples)} examples")
               if progress and console.is_terminal else nullcontext())
    with spinner:
        shared = shared_prefix_loss(model, examples, batch_size=batch_size)
        if shared is not None:
            loss, n_tokens = shared
        else:
            result = evaluate_loss(model, examples, batch_size=batch_size, progress=False)
            loss, n_tokens = float(result.loss), int(result.n_tokens)
    ppl = math.exp(loss) if loss < 700 else float("inf")
    return HeldoutLoss(loss=loss, perplexity=ppl, n_tokens=n_tokens,
                       n_examples=len(examples), dropped=dict(dropped))


def shared_prefix_loss(model: Any, examples: list[Any], *,
                       batch_size: int = 8) -> tuple[float, int] | None:
    """The same token-weighted loss as `evaluate_loss`, computing an untrained prefix that every
    example shares (a prompt variant's system prompt, a few-shot block) once, as generation does
    (`infer.decode`): its KV cache is copied to each batch and only the rows' own tokens are
    forwarded. None when there is no such prefix of PREFIX_MIN_TOKENS tokens or more.

    Why: with a ~730-token system prompt on 39 short rows, the prompt was ~90 % of the tokens the
    plain path computed (and attention is quadratic in it).
    """
    from tuneloop.infer.decode import (
        PREFIX_MIN_TOKENS,
        cache_for_rows,
        cache_keyword,
        common_length,
    )

    ids = [list(ex.input_ids) for ex in examples]
    # The prefix keeps its last shared token out: that token's logits predict the rows' first
    # own token, so each row's forward starts with it. No label may fall inside the prefix.
    k = common_length(ids[0], ids[1:], min(len(x) for x in ids) - 1) - 1
    if k < PREFIX_MIN_TOKENS or any(lab != IGNORE_INDEX for ex in examples
                                    for lab in ex.labels[:k + 1]):
        return None
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    kw = cache_keyword(model)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()  # as evaluate_loss: no dropout in a held-out loss
    with torch.no_grad():
        prefix = DynamicCache(config=model.config)
        model(input_ids=torch.tensor([ids[0][:k]], device=device), use_cache=True,
              logits_to_keep=1, **{kw: prefix})
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            tails = [list(ex.input_ids[k:]) for ex in chunk]
            width = max(len(t) for t in tails)
            # [prefix][tail][right padding]: the padding is masked and carries no label.
            inp = torch.tensor([t + [0] * (width - len(t)) for t in tails], device=device)
            labels = torch.tensor([list(ex.labels[k:]) + [IGNORE_INDEX] * (width - len(t))
                                   for ex, t in zip(chunk, tails, strict=True)], device=device)
            tail_mask = (torch.arange(width, device=device)[None, :]
                         < torch.tensor([len(t) for t in tails], device=device)[:, None]).long()
            mask = torch.cat([tail_mask.new_ones((len(chunk), k)), tail_mask], dim=1)
            cache = cache_for_rows(prefix, len(chunk))
            pos = (k + torch.arange(width, device=device))[None, :].expand(len(chunk), -1)
            logits = model(input_ids=inp, attention_mask=mask, position_ids=pos, use_cache=True,
                           **{kw: cache}).logits.float()
            targets = labels[:, 1:]
            total += float(torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1),
                ignore_index=IGNORE_INDEX, reduction="sum"))
            count += int((targets != IGNORE_INDEX).sum())
    model.train(was_training)
    return (total / count if count else float("nan")), count


def load_heldout_records(paths: list[str | Path]) -> list[Any]:
    """Clean records of the held-out files (rejected rows counted by the loader, never silent)."""
    return load_clean_records([str(p) for p in paths])


def heldout_loss_for_ref(
    model_ref: str | Path, data: list[str | Path], *, max_length: int | None = 1024,
    batch_size: int = 8, device: str = "cpu", record: bool = True,
) -> HeldoutLoss:
    """Load a model by reference, compute its held-out loss on data files, record it."""
    records = load_heldout_records(data)
    # The one path every generating/scoring command loads a model by (model in eval mode,
    # tokenizer, trained template); only the truncation length differs from generation's.
    model, tokenizer, _ = load_for_generation(str(model_ref), device)
    renderer = renderer_for(model_ref, tokenizer, max_length=max_length)
    result = heldout_loss(model, tokenizer, renderer, records, batch_size=batch_size)
    if record:
        record_eval(
            model_ref=str(model_ref), kind="loss", name=",".join(Path(str(p)).name for p in data),
            score=result.loss, n=result.n_tokens, run_dir=run_dir_of(model_ref),
            extra=result.to_json() | {"data": [str(p) for p in data]},
        )
    return result
