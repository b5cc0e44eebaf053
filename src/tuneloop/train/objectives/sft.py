"""Supervised fine-tuning on packed rows; continued pretraining is the same objective on text records.

Examples are rendered token ids + labels (`data.render`; answers only unless train_on_prompt,
every token for `text` records). A micro-batch is ONE padding-free packed row with per-document
positions (`train/collate.py`); the loss is the token cross-entropy summed over trained tokens,
which are the units the loop normalises by.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tuneloop.train.objectives.base import (
    Batch,
    EvalResult,
    LossOutput,
    ObjectiveContext,
    PreparedData,
)
from tuneloop.train.objectives.sft_data import prepare_data
from tuneloop.train.objectives.sharded_eval import sharded_eval_sums


@dataclass
class EvalLoss:
    """Held-out loss over trained (label != -100) tokens."""

    loss: float
    perplexity: float
    n_tokens: int


def evaluate_loss(model: Any, examples: list[Any], *, batch_size: int = 8, accelerator: Any = None,
                  progress: Any = False) -> EvalLoss:
    """Mean token loss and perplexity of `model` on rendered examples (sharded across processes).

    progress: False, True (own bar), or a live rich Progress to add an eval task to.
    """
    import torch

    from tuneloop.train.collate import collate_packed, packed_loss

    def sums_of(model: Any, chunk: list[Any], device: Any) -> Any:
        loss_sum, n = packed_loss(model, collate_packed(chunk))  # moves it to the model
        return torch.stack([loss_sum.double(),
                            torch.tensor(float(n), dtype=torch.float64, device=device)])

    loss_sum, n_tok = sharded_eval_sums(model, examples, batch_size=batch_size,
                                        accelerator=accelerator, progress=progress, width=2,
                                        sums_of=sums_of)
    loss = loss_sum / n_tok if n_tok else float("nan")
    ppl = math.exp(loss) if loss < 700 else float("inf")
    return EvalLoss(loss=loss, perplexity=ppl, n_tokens=int(n_tok))


class SFTObjective:
    """Next-token cross-entropy on rendered examples, packed padding-free (units: trained tokens)."""

    name = "sft"

    def prepare_data(self, config: Any, renderer: Any) -> PreparedData:
        """Load, split and render `config.data` (drops counted by reason, R13)."""
        return prepare_data(config.data, renderer)

    def lengths(self, examples: list[Any]) -> list[int]:
        """Tokens per rendered example."""
        return [len(ex.input_ids) for ex in examples]

    def setup(self, model: Any, data: PreparedData, ctx: ObjectiveContext) -> None:
        """Per-document attention for packed rows (fastest measured path; train/collate.py)."""
        from tuneloop.train.collate import enable_packed_attention

        enable_packed_attention(model)

    def collate(self, examples: list[Any]) -> Batch:
        """One packed (1, T) row."""
        from tuneloop.train.collate import collate_packed

        packed = collate_packed(examples)
        return Batch(inputs=packed, n_units=int(packed["n_trained_tokens"]),
                     n_real_tokens=int(packed["n_real_tokens"]),
                     n_positions=int(packed["input_ids"].numel()))

    def loss(self, model: Any, batch: Batch) -> LossOutput:
        """Summed token cross-entropy over the trained tokens."""
        from tuneloop.train.collate import packed_loss

        loss_sum, _ = packed_loss(model, batch.inputs)
        return LossOutput(loss_sum, {})

    def evaluate(self, model: Any, examples: list[Any], *, batch_size: int, accelerator: Any,
                 progress: Any) -> EvalResult:
        """Held-out token loss, perplexity and token count."""
        res = evaluate_loss(model, examples, batch_size=batch_size, accelerator=accelerator,
                            progress=progress)
        return EvalResult(loss=res.loss,
                          metrics={"perplexity": res.perplexity, "eval_tokens": res.n_tokens})
