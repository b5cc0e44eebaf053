"""How far to trust a judge: its agreement with people on the same pairwise comparisons.

A pure function over votes (no database): each `Vote` is one (prompt, model A, model B) with the
human's winner and the judge's winner (after the both-orders rule), optionally the judge's letter
in each order (for position bias) and the two answers' lengths (for length bias). Wiring to the
arena's vote database (#9) is left to the arena branch: it builds `Vote`s and calls `agreement`.

Figures (as in the MT-Bench paper, Zheng et al. 2023, section 4.2):

- agreement with ties: share of votes where judge and human name the same outcome (A, B, tie);
- agreement without ties: the same over votes where neither said tie;
- Cohen's kappa over the three outcomes (agreement beyond chance);
- each with a seeded percentile bootstrap 95% interval (votes resampled);
- position bias: of the judge's per-order verdicts that name a winner, the share naming the
  answer shown first, and the share of pairs where the first-shown answer won in both orders
  (a consistent judge never does that);
- length bias: of non-tie verdicts where the answers differ in length, the share won by the
  longer answer, for the judge and for people, overall and by relative length difference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

OUTCOMES = ("A", "B", "tie")
LENGTH_BUCKETS = ((0.0, 0.1), (0.1, 0.5), (0.5, float("inf")))  # |len A - len B| / max


@dataclass(frozen=True)
class Vote:
    """One comparison judged by a person and by the judge (outcomes "A", "B" or "tie")."""

    prompt: str
    model_a: str
    model_b: str
    human: str
    judge: str
    len_a: int | None = None
    len_b: int | None = None
    judge_ab: str | None = None  # judge's letter with A shown first ("A" | "B" | "C")
    judge_ba: str | None = None  # with B shown first ("A" there means model B)

    def __post_init__(self) -> None:
        for name in ("human", "judge"):
            if getattr(self, name) not in OUTCOMES:
                raise ValueError(f"{name} outcome must be one of {OUTCOMES}, got "
                                 f"{getattr(self, name)!r}")


def _agree(votes: Sequence[Vote]) -> float | None:
    return sum(v.human == v.judge for v in votes) / len(votes) if votes else None


def _agree_no_ties(votes: Sequence[Vote]) -> float | None:
    return _agree([v for v in votes if v.human != "tie" and v.judge != "tie"])


def cohen_kappa(votes: Sequence[Vote]) -> float | None:
    """(p_o - p_e) / (1 - p_e) over the three outcomes; None if undefined (p_e = 1)."""
    n = len(votes)
    if not n:
        return None
    p_o = sum(v.human == v.judge for v in votes) / n
    p_e = sum((sum(v.human == o for v in votes) / n) * (sum(v.judge == o for v in votes) / n)
              for o in OUTCOMES)
    return None if p_e >= 1.0 else (p_o - p_e) / (1.0 - p_e)


def _bootstrap(votes: Sequence[Vote], stat: Callable[[Sequence[Vote]], float | None],
               n_boot: int, seed: int) -> tuple[float, float] | None:
    import numpy as np

    if not votes:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(votes), size=len(votes))
        value = stat([votes[i] for i in idx])
        if value is not None:
            values.append(value)
    if not values:
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _position_bias(votes: Sequence[Vote]) -> dict[str, float | int | None]:
    decided = first = both_first = pairs = 0
    for v in votes:
        if v.judge_ab is None or v.judge_ba is None:
            continue
        pairs += 1
        for letter in (v.judge_ab, v.judge_ba):
            if letter in ("A", "B"):
                decided += 1
                first += letter == "A"
        both_first += v.judge_ab == "A" and v.judge_ba == "A"
    return {"pairs": pairs,
            "first_shown_win_rate": first / decided if decided else None,
            "first_shown_won_both_orders": both_first / pairs if pairs else None}


def _longer_wins(votes: Sequence[Vote], who: str, bucket: tuple[float, float] | None) -> dict:
    won = n = 0
    for v in votes:
        outcome = getattr(v, who)
        if outcome == "tie" or v.len_a is None or v.len_b is None or v.len_a == v.len_b:
            continue
        rel = abs(v.len_a - v.len_b) / max(v.len_a, v.len_b)
        if bucket is not None and not bucket[0] <= rel < bucket[1]:
            continue
        n += 1
        won += (outcome == "A") == (v.len_a > v.len_b)
    return {"n": n, "longer_win_rate": won / n if n else None}


def agreement(votes: Sequence[Vote], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Agreement (with / without ties), Cohen's kappa with bootstrap CIs, position and length
    bias of the judge, over `votes`."""
    votes = list(votes)
    no_ties = [v for v in votes if v.human != "tie" and v.judge != "tie"]
    return {
        "n": len(votes),
        "n_without_ties": len(no_ties),
        "agreement_with_ties": _agree(votes),
        "agreement_with_ties_ci95": _bootstrap(votes, _agree, n_boot, seed),
        "agreement_without_ties": _agree(no_ties),
        "agreement_without_ties_ci95": _bootstrap(votes, _agree_no_ties, n_boot, seed),
        "cohen_kappa": cohen_kappa(votes),
        "cohen_kappa_ci95": _bootstrap(votes, cohen_kappa, n_boot, seed),
        "position_bias": _position_bias(votes),
        "length_bias": {
            "judge": _longer_wins(votes, "judge", None),
            "human": _longer_wins(votes, "human", None),
            "judge_by_length_difference": [
                {"relative_difference": [lo, None if hi == float("inf") else hi],
                 **_longer_wins(votes, "judge", (lo, hi))} for lo, hi in LENGTH_BUCKETS],
        },
    }


__all__ = ["OUTCOMES", "Vote", "agreement", "cohen_kappa"]
