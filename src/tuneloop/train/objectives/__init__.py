"""Training objectives and their registry: `TrainConfig.objective` names one of OBJECTIVES.

To add one (e.g. DPO): write `objectives/NAME.py` with a class following
`base.Objective`, add it here, and add NAME to `TrainConfig.objective` (plus its settings
section). The loop (`train/loop.py`) is not touched. See docs/training.md "Writing an objective".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuneloop.errors import ConfigError
from tuneloop.train.objectives.base import (
    Batch,
    EvalResult,
    LossOutput,
    Objective,
    ObjectiveContext,
    PreparedData,
)
from tuneloop.train.objectives.dpo import DPOObjective
from tuneloop.train.objectives.sft import SFTObjective

__all__ = ["OBJECTIVES", "Batch", "EvalResult", "LossOutput", "Objective", "ObjectiveContext",
           "PreparedData", "make_objective"]

# name -> factory(config) -> Objective
OBJECTIVES: dict[str, Callable[[Any], Objective]] = {
    "sft": lambda config: SFTObjective(),
    "dpo": lambda config: DPOObjective(config.dpo, method=config.method),
}


def make_objective(config: Any) -> Objective:
    """The objective `config.objective` names."""
    factory = OBJECTIVES.get(config.objective)
    if factory is None:
        raise ConfigError(f"objective: unknown objective {config.objective!r}",
                          fix=f"use one of {', '.join(OBJECTIVES)}")
    return factory(config)
