"""The divergence guard: tells from the logged losses when training has blown up or died.

A run at a far too high learning rate often stays finite (so nan_policy never fires) while the
model is destroyed: its loss settles at ln(vocabulary size), the loss of a model that predicts
every token with the same probability, or climbs far above where it started, or its gradients
vanish to exactly zero. The loop feeds every logged train row and every held-out eval to a
`DivergenceGuard`; the first `Divergence` it returns stops the run (training.on_divergence:
stop) or is warned about (warn). Pure Python over floats, so it is unit-tested on sequences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tuneloop.errors import TrainingError

# A loss at or above this share of ln(V) is a uniform (dead) model...
UNIFORM_SHARE = 0.95
# ...but only if the run started clearly below it: a random-init model starts at ln(V).
WELL_BELOW_SHARE = 0.8
# "Far above its start": this many times the first loss AND this many nats above it (a model
# already fit to its data starts near 0, where 3x is ordinary noise).
RISE_FACTOR = 3.0
RISE_MIN_NATS = 1.0
# Logged train rows in a row that must show the uniform level or a zero gradient norm.
PATIENCE = 3


class TrainingDiverged(TrainingError):
    """The divergence guard stopped the run (status `diverged`); the fix is a lower LR."""


@dataclass(frozen=True)
class Divergence:
    """What the guard saw: the step, which signal, and a sentence for the user."""

    step: int
    kind: str  # uniform | rising | zero_grad
    reason: str


@dataclass
class DivergenceGuard:
    """Watches logged train losses / gradient norms and held-out eval losses (lower is better).

    uniform_loss: ln(vocabulary size) for token-level losses; None (e.g. DPO) turns that rule off.
    """

    uniform_loss: float | None = None
    patience: int = PATIENCE
    first_train: float | None = None
    first_eval: float | None = None
    _uniform_run: int = 0
    _zero_grad_run: int = 0
    seen: list[Divergence] = field(default_factory=list)

    def observe_train(self, step: int, loss: float, grad_norm: float | None) -> Divergence | None:
        """One logged train row; a Divergence when the last rows show one, else None."""
        if not math.isfinite(loss):
            return None  # NaN/inf is nan_policy's failure, reported on its own (R8)
        if self.first_train is None:
            self.first_train = loss
        self._zero_grad_run = self._zero_grad_run + 1 if grad_norm == 0.0 else 0
        self._uniform_run = self._uniform_run + 1 if self._at_uniform(loss, self.first_train) \
            else 0
        if self._uniform_run >= self.patience:
            return self._found(step, "uniform", (
                f"the train loss has been {loss:.4f} for {self._uniform_run} logged steps, the "
                f"loss of a model that predicts every token alike (ln of the vocabulary size = "
                f"{self.uniform_loss:.4f}); it started at {self.first_train:.4f}"))
        if self._rose(loss, self.first_train):
            return self._found(step, "rising", (
                f"the train loss is {loss:.4f}, more than {RISE_FACTOR:g}x its first logged "
                f"value {self.first_train:.4f}"))
        if self._zero_grad_run >= self.patience:
            return self._found(step, "zero_grad", (
                f"the gradient norm has been exactly 0 for {self._zero_grad_run} logged steps "
                f"(the model no longer learns; train loss {loss:.4f})"))
        return None

    def observe_eval(self, step: int, loss: float) -> Divergence | None:
        """One held-out eval (an average over the eval set, so one is enough to judge)."""
        if not math.isfinite(loss):
            return None
        if self.first_eval is None:
            self.first_eval = loss
            return None
        if self._at_uniform(loss, self.first_eval):
            return self._found(step, "uniform", (
                f"the eval loss is {loss:.4f}, the loss of a model that predicts every token "
                f"alike (ln of the vocabulary size = {self.uniform_loss:.4f}); it was "
                f"{self.first_eval:.4f} at the first eval"))
        if self._rose(loss, self.first_eval):
            return self._found(step, "rising", (
                f"the eval loss is {loss:.4f}, more than {RISE_FACTOR:g}x its first value "
                f"{self.first_eval:.4f}"))
        return None

    def _at_uniform(self, loss: float, start: float) -> bool:
        u = self.uniform_loss
        return u is not None and start < WELL_BELOW_SHARE * u and loss >= UNIFORM_SHARE * u

    @staticmethod
    def _rose(loss: float, start: float) -> bool:
        return loss > RISE_FACTOR * start and loss > start + RISE_MIN_NATS

    def _found(self, step: int, kind: str, reason: str) -> Divergence:
        found = Divergence(step=step, kind=kind, reason=reason)
        self.seen.append(found)
        return found


def uniform_loss_of(model: object) -> float | None:
    """ln(output vocabulary size) of a causal LM (its loss when it predicts uniformly)."""
    head = getattr(model, "get_output_embeddings", lambda: None)()
    size = getattr(getattr(head, "weight", None), "shape", (None,))[0]
    if not size:
        size = getattr(getattr(model, "config", None), "vocab_size", None)
    return math.log(size) if size and size > 1 else None


def diverged_error(found: Divergence, *, learning_rate: float, where: str) -> TrainingDiverged:
    """The error a stopped run raises: step, reason, and the learning-rate fix."""
    return TrainingDiverged(
        f"training diverged at step {found.step}: {found.reason}; no checkpoint or model was "
        "written after it",
        where=where,
        fix=f"lower training.learning_rate (it is {learning_rate:g}; try "
            f"{learning_rate / 10:g} or less), or set training.on_divergence: warn to go on")
