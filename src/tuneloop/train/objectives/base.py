"""The Objective protocol: what a training objective supplies to the one training loop.

The loop (tuneloop.train.loop) owns everything that is the same for every objective: processes
and precision (Accelerate), the batch plan and its exact resume position, gradient accumulation
and its normalisation across micro-batches and processes, clipping, the NaN/inf policy, the
optimizer and schedule, eval cadence and early stopping, checkpoints, metrics and trackers,
progress bars and the final model. An objective owns what it optimises:

1. `prepare_data(config, renderer)` → `PreparedData`: its examples (any type it likes), counts of
   dropped rows by reason, the data fingerprint a resume compares (R6), and the data format.
2. `lengths(examples)` → tokens per example: the batch plan (`plan_batches`) groups examples into
   batches by count; the token budget (`training.max_tokens_per_batch`) cuts a batch into packed
   micro-batches by these lengths (`split_by_tokens`), whose gradients accumulate.
3. `setup(model, data, ctx)`: once, after the trainable model is built (LoRA or full) and before
   the optimizer, `accelerator.prepare` and any resume. Switch attention kernels, build extra
   models (a frozen reference), precompute what needs the untrained weights. Whatever it keeps
   is the objective's own state; the loop never sees it and checkpoints only the trainable
   parameters of the policy model.
4. `collate(examples)` → `Batch`: tensors for one micro-batch plus host-side counts. `n_units`
   (the loss normaliser: trained tokens for SFT, pairs for DPO) must be known BEFORE the forward
   pass: the loop divides every micro-batch's summed loss by the units of the whole optimizer
   step over all processes, so accumulation and DDP equal one large batch (R27, R28).
5. `loss(model, batch)` → `LossOutput(loss_sum, metrics)`: the loss SUMMED over the batch's
   units (a 0-dim tensor with a graph), and optional extra metrics, each also a sum over the
   units (0-dim tensors; detached by the loop). The loop logs `loss` and every extra metric as
   its mean per unit over the logging window in `train` rows (one host sync per logging step,
   never per step). `model` is the prepared model (possibly DDP-wrapped, under autocast);
   `ctx.accelerator.unwrap_model(model)` gives the module itself (e.g. for
   `with unwrapped.disable_adapter():` — a LoRA reference model without a second copy).
6. `evaluate(model, examples, batch_size=, accelerator=, progress=)` → `EvalResult(loss,
   metrics)`: the held-out evaluation. `loss` (lower is better) drives early stopping and the
   best checkpoint; it and `metrics` land in one `eval` row (`eval_loss`, then the metrics).
   Shard the examples over `accelerator.num_processes` and reduce the sums (every process calls
   it); never call the DDP wrapper (ranks run different numbers of batches).

Register a new objective in `tuneloop.train.objectives.OBJECTIVES` and add its name to
`TrainConfig.objective`; the loop is not touched. See docs/training.md "Writing an objective".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass
class PreparedData:
    """An objective's train/eval examples plus what was dropped and the data fingerprint.

    `fingerprint` is written to RUN/data/fingerprint.json; its `id` is what a resume compares
    (R6), so it must change whenever the examples (tokens, order, masks) change. `dropped` maps
    "train.reason"/"eval.reason" to counts (R13: said before training, kept in run.json).
    `format` is saved with the model ("chat", or "text" for continued pretraining).
    """

    train: list[Any]
    eval: list[Any]
    dropped: dict[str, int] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    format: str = "chat"


@dataclass
class Batch:
    """One collated micro-batch: the tensors `loss` takes plus counts known on the host."""

    inputs: Any  # whatever the objective's loss() reads (a dict of CPU tensors for SFT)
    n_units: int  # what loss_sum is summed over (trained tokens, pairs, ...); the normaliser
    n_real_tokens: int  # real tokens processed (tokens/s)
    n_positions: int  # positions processed including any padding (real_token_share)


@dataclass
class LossOutput:
    """`loss_sum`: the loss summed over the batch's units; `metrics`: extra sums over units."""

    loss_sum: Any
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalResult:
    """A held-out evaluation: `loss` (lower is better) plus extra numbers for the eval row."""

    loss: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ObjectiveContext:
    """What an objective may use in `setup` (and keep): the run's config and machinery."""

    config: Any  # the TrainConfig
    accelerator: Any  # the accelerate Accelerator (device, process index/count, unwrap_model)
    run_dir: Path  # where a cache may be written (main process only; tuneloop.rundir layout)
    tokenizer: Any
    renderer: Any  # the tuneloop.data.render.Renderer of the run's template and max_length


@runtime_checkable
class Objective(Protocol):
    """What is optimised. See the module docstring for the contract of each method."""

    name: str

    def prepare_data(self, config: Any, renderer: Any) -> PreparedData:
        """Load, split and turn the configured rows into examples; TrainingError if none remain."""
        ...

    def lengths(self, examples: list[Any]) -> list[int]:
        """Tokens per example, in order (for the batch plan)."""
        ...

    def setup(self, model: Any, data: PreparedData, ctx: ObjectiveContext) -> None:
        """Once before the optimizer/prepare/resume: kernels, extra models, precomputation."""
        ...

    def collate(self, examples: list[Any]) -> Batch:
        """One micro-batch (CPU tensors; the loss moves them to the model's device)."""
        ...

    def loss(self, model: Any, batch: Batch) -> LossOutput:
        """The loss summed over `batch.n_units`, and extra metrics summed the same way."""
        ...

    def evaluate(self, model: Any, examples: list[Any], *, batch_size: int, accelerator: Any,
                 progress: Any) -> EvalResult:
        """Held-out loss (and metrics) over `examples`, sharded across processes."""
        ...
