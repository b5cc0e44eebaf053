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

from tuneloop.errors import EvalError

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
    from tuneloop.data.records import Record

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
    from tuneloop.train import evaluate_loss

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
        result = evaluate_loss(model, examples, batch_size=batch_size, progress=False)
    loss = float(result.loss)
    ppl = math.exp(loss) if loss < 700 else float("inf")
    return HeldoutLoss(loss=loss, perplexity=ppl, n_tokens=int(result.n_tokens),
                       n_examples=len(examples), dropped=dict(dropped))


def load_heldout_records(paths: list[str | Path]) -> list[Any]:
    """Clean records of the held-out files (rejected rows counted by the loader, never silent)."""
    from tuneloop.data.load import load_clean_records

    return load_clean_records([str(p) for p in paths])


def heldout_loss_for_ref(
    model_ref: str | Path, data: list[str | Path], *, max_length: int | None = 1024,
    batch_size: int = 8, device: str = "cpu", record: bool = True,
) -> HeldoutLoss:
    """Load a model by reference, compute its held-out loss on data files, record it."""
    from tuneloop.eval.suite_run import renderer_for, run_dir_of
    from tuneloop.index import record_eval
    from tuneloop.models import load_model

    records = load_heldout_records(data)
    model, tokenizer = load_model(str(model_ref), device=device)
    renderer = renderer_for(model_ref, tokenizer, max_length=max_length)
    result = heldout_loss(model, tokenizer, renderer, records, batch_size=batch_size)
    if record:
        record_eval(
            model_ref=str(model_ref), kind="loss", name=",".join(Path(str(p)).name for p in data),
            score=result.loss, n=result.n_tokens, run_dir=run_dir_of(model_ref),
            extra=result.to_json() | {"data": [str(p) for p in data]},
        )
    return result
