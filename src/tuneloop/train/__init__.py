"""Training: config → run directory (checkpoints, metrics, final model). See docs/training.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneloop.config import TrainConfig, load_config

if TYPE_CHECKING:  # heavy imports (torch) stay out of `import tuneloop.train`
    from tuneloop.train.trainer import EvalLoss, TrainResult

__all__ = ["EvalLoss", "TrainConfig", "TrainResult", "evaluate_loss", "load_config", "train"]


def train(config: TrainConfig, **kwargs: Any) -> TrainResult:
    """Run one training recipe (see tuneloop.train.trainer.train)."""
    from tuneloop.train.trainer import train as _train

    return _train(config, **kwargs)


def evaluate_loss(model: Any, examples: list[Any], **kwargs: Any) -> EvalLoss:
    """Held-out loss/perplexity of a model on rendered examples (see trainer.evaluate_loss)."""
    from tuneloop.train.trainer import evaluate_loss as _evaluate_loss

    return _evaluate_loss(model, examples, **kwargs)


def __getattr__(name: str) -> Any:
    if name in ("TrainResult", "EvalLoss"):
        from tuneloop.train import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
