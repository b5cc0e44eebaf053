"""Hyperparameter search over ordinary training runs (`tuneloop sweep`), on Optuna.

`run_sweep(config, ["training.learning_rate=log:1e-5..1e-2", "lora.r=8,16,32"],
metric="eval_loss", options=SweepOptions(trials=6))`; see docs/sweep.md.
"""

from __future__ import annotations

from tuneloop.sweep.params import Param, parse_param, parse_params
from tuneloop.sweep.run import Metric, SweepOptions, SweepResult, Trial, parse_metric, run_sweep

__all__ = ["Metric", "Param", "SweepOptions", "SweepResult", "Trial", "parse_metric",
           "parse_param", "parse_params", "run_sweep"]
