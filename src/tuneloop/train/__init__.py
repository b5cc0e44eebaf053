"""Training: config → run directory (checkpoints, metrics, final model). See docs/training.md.

`train(config)` runs the one loop (train/loop.py) with the objective `config.objective` names
(train/objectives/); `evaluate_loss` is the held-out token loss the SFT objective logs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneloop.train.config import TrainConfig, load_config

if TYPE_CHECKING:  # heavy imports (torch) stay out of `import tuneloop.train`
    from tuneloop.train.loop import TrainHooks, TrainResult
    from tuneloop.train.objectives.sft import EvalLoss

__all__ = ["EvalLoss", "TrainConfig", "TrainHooks", "TrainResult", "evaluate_loss", "load_config",
           "train"]


def train(config: TrainConfig, **kwargs: Any) -> TrainResult:
    """Run one training (see tuneloop.train.loop.train for the keyword arguments)."""
    from tuneloop.train.loop import train as _train

    return _train(config, **kwargs)


def evaluate_loss(model: Any, examples: list[Any], **kwargs: Any) -> EvalLoss:
    """Held-out loss/perplexity of a model on rendered examples (see objectives.sft)."""
    from tuneloop.train.objectives.sft import evaluate_loss as _evaluate_loss

    return _evaluate_loss(model, examples, **kwargs)


def __getattr__(name: str) -> Any:
    if name in ("TrainResult", "TrainHooks"):
        from tuneloop.train import loop

        return getattr(loop, name)
    if name == "EvalLoss":
        from tuneloop.train.objectives import sft

        return sft.EvalLoss
    raise AttributeError(name)
