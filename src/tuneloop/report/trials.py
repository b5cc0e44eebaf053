"""The report's trials section: the trials of a `tuneloop sweep` side by side.

Reads the sweep's rows from the index (`index.list_trials`): per trial its sampled params, the
metric value, its state (complete, pruned, failed) and the steps it trained; the best completed
trial is marked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.index import list_trials


@dataclass
class TrialView:
    """One trial as the template shows it."""

    trial: int
    state: str
    value: float | None
    steps: int | None
    params: list[str] = field(default_factory=list)  # shown values, in the order of `param_keys`
    best_eval_loss: float | None = None
    pruned_at_step: int | None = None
    error: str | None = None
    run_dir: str | None = None
    best: bool = False


def _show(value: Any) -> str:
    """A sampled value as a cell: floats to 4 significant digits (a learning rate is 3.2e-04)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trials_view(sweep: str | Path, index_path: Path | None = None) -> dict[str, Any]:
    """{"sweep", "metric", "direction", "param_keys", "trials": [TrialView...], "counts"}."""
    rows = list_trials(sweep, index=index_path)
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r["params"] if k not in keys)
    extra0 = (rows[0]["extra"] or {}) if rows else {}
    direction = extra0.get("direction", "minimize")
    views = []
    for r in rows:
        extra = r["extra"] or {}
        views.append(TrialView(
            trial=r["trial"], state=r["state"], value=r["value"], steps=r["steps"],
            params=[_show(r["params"].get(k, "—")) for k in keys], run_dir=r["run_dir"],
            best_eval_loss=extra.get("best_eval_loss"),
            pruned_at_step=extra.get("pruned_at_step"), error=extra.get("error")))
    scored = [v for v in views if v.state == "complete" and v.value is not None]
    if scored:
        pick = max if direction == "maximize" else min
        pick(scored, key=lambda v: v.value).best = True
    counts = {s: sum(v.state == s for v in views) for s in ("complete", "pruned", "failed")}
    return {"sweep": str(sweep), "metric": extra0.get("metric", "—"), "direction": direction,
            "param_keys": keys, "trials": views, "counts": counts}
