"""Judge verdict parsing and aggregation: ratings, pairwise both-order rule, bootstrap intervals."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_PAIR = re.compile(r"\[\[\s*([ABC])\s*\]\]")
_PASS = re.compile(r"\[\[\s*(PASS|FAIL)\s*\]\]", re.IGNORECASE)


def parse_rating(text: str, low: float = 1.0, high: float = 10.0) -> float | None:
    """The `[[N]]` rating in a judge output, or None if absent, ambiguous or out of range (R18)."""
    values = {float(m) for m in _RATING.findall(text or "")}
    if len(values) != 1:
        return None  # none, or several different ratings: not a verdict we can trust
    value = values.pop()
    return value if low <= value <= high else None


def parse_pair(text: str) -> str | None:
    """`A`, `B` or `C` (tie) from `[[A]]`/`[[B]]`/`[[C]]`; None if absent or contradictory."""
    found = set(_PAIR.findall(text or ""))
    return found.pop() if len(found) == 1 else None


def parse_pass(text: str) -> bool | None:
    """True/False from `[[PASS]]`/`[[FAIL]]`; None if absent or contradictory."""
    found = {m.upper() for m in _PASS.findall(text or "")}
    return (found.pop() == "PASS") if len(found) == 1 else None


@dataclass(frozen=True)
class PairOutcome:
    """One question judged in both orders, from model A's point of view."""

    outcome: str | None  # "A" | "B" | "tie" | None (excluded: a verdict was unparseable)
    flipped: bool  # the verdict changed when the order of the answers was swapped


def combine_pair(verdict_ab: str | None, verdict_ba: str | None) -> PairOutcome:
    """Both-order rule (R17): the same winner in both orders wins; anything else is a tie.

    `verdict_ab` is the judge's letter with model A shown first; `verdict_ba` with model B shown
    first (so there `[[A]]` means model B). Unparseable in either order → excluded (R18).
    """
    if verdict_ab is None or verdict_ba is None:
        return PairOutcome(None, False)
    swap = {"A": "B", "B": "A", "C": "C"}
    first, second = verdict_ab, swap[verdict_ba]  # both now in model-A/model-B terms
    flipped = first != second
    if first == second and first in ("A", "B"):
        return PairOutcome(first, False)
    return PairOutcome("tie", flipped)


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean (seeded, so reports are reproducible)."""
    import numpy as np

    if len(values) == 0:
        return None
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(data), size=(n_boot, len(data)))
    means = data[idx].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def summarize_scores(scores: Sequence[float | None], *, seed: int = 0) -> dict:
    """Mean single-answer score with its bootstrap 95% interval; None scores are counted apart."""
    kept = [s for s in scores if s is not None]
    return {
        "n": len(kept),
        "unparseable": len(scores) - len(kept),
        "mean": (sum(kept) / len(kept)) if kept else None,
        "ci95": bootstrap_ci(kept, seed=seed),
    }


def summarize_pairs(outcomes: Sequence[PairOutcome], *, seed: int = 0) -> dict:
    """Win rate of model A = (wins + ½ ties) / n with a bootstrap interval, plus the flip rate."""
    kept = [o for o in outcomes if o.outcome is not None]
    wins = sum(o.outcome == "A" for o in kept)
    losses = sum(o.outcome == "B" for o in kept)
    ties = sum(o.outcome == "tie" for o in kept)
    points = [1.0 if o.outcome == "A" else 0.5 if o.outcome == "tie" else 0.0 for o in kept]
    n = len(kept)
    return {
        "n": n,
        "excluded": len(outcomes) - n,
        "wins": wins,
        "losses": losses,
        "ties": ties,
        "win_rate": (wins + 0.5 * ties) / n if n else None,
        "ci95": bootstrap_ci(points, seed=seed),
        "flip_rate": (sum(o.flipped for o in kept) / n) if n else None,
    }
