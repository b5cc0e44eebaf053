"""Ratings from pairwise votes: Bradley-Terry with bootstrap intervals, online Elo, win rates.

Bradley-Terry: P(i beats j) = 1 / (1 + 10 ** ((R_j - R_i) / 400)), i.e. a logistic model in the
natural strengths θ with R = 1000 + 400 / ln(10) · (θ - mean θ) (the mean rating is anchored at
1000, or one named model is). A tie or a both-bad vote counts as half a win for each side (as
public arenas do). θ is the exact maximum-likelihood fit, by Newton's method on the concave
log-likelihood with one strength pinned (the model is invariant to a shift).

The maximum-likelihood fit exists only when every split of the models into two groups has a win
in both directions (Zermelo/Ford: the "beat" graph is strongly connected). When it does not (a
model that never lost, two groups never compared), the fit adds a weak normal prior on θ
(sd = PRIOR_SD natural units ≈ 695 rating points) instead of reporting infinite ratings, and
says so. The same applies to each bootstrap resample; the count of such resamples is reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SCALE = 400.0
BASE = 10.0
ANCHOR = 1000.0
ELO_K = 4.0
PRIOR_SD = 4.0
_TO_RATING = SCALE / math.log(BASE)


@dataclass(frozen=True)
class Outcome:
    """One vote reduced to what ratings need: the two models and the result for `a`."""

    a: str
    b: str
    score: float  # 1 = a better, 0 = b better, 0.5 = tie or both bad


def win_matrix(outcomes: Sequence[Outcome], models: list[str],
               weights: np.ndarray | None = None) -> np.ndarray:
    """W[i, j] = (weighted) wins of model i over model j, ties counting half to each."""
    pos = {m: k for k, m in enumerate(models)}
    w = np.zeros((len(models), len(models)))
    for k, o in enumerate(outcomes):
        weight = 1.0 if weights is None else float(weights[k])
        i, j = pos[o.a], pos[o.b]
        w[i, j] += weight * o.score
        w[j, i] += weight * (1.0 - o.score)
    return w


def mle_exists(wins: np.ndarray) -> bool:
    """True when the beat graph (i → j if i ever beat j) is strongly connected."""
    from scipy.sparse.csgraph import connected_components

    n = wins.shape[0]
    if n < 2:
        return True
    count, _ = connected_components(wins > 0, directed=True, connection="strong")
    return count == 1


def fit_strengths(wins: np.ndarray, *, prior_sd: float | None = None, tol: float = 1e-11,
                  max_iter: int = 200) -> np.ndarray:
    """Natural-log strengths θ (mean 0) maximising Σ W[i,j] log σ(θ_i - θ_j) (+ a normal prior).

    Without `prior_sd` θ_0 is pinned to 0 during the fit (the likelihood only sees differences);
    with it, the prior makes every θ identifiable. Newton steps with backtracking.
    """
    n = wins.shape[0]
    games = wins + wins.T
    lam = 0.0 if prior_sd is None else 1.0 / (prior_sd * prior_sd)
    free = np.arange(n) if lam > 0 else np.arange(1, n)
    theta = np.zeros(n)

    def loglik(t: np.ndarray) -> float:
        diff = t[:, None] - t[None, :]
        # log σ(d) = -log(1 + e^-d), stable for large |d|
        return float(-(wins * np.logaddexp(0.0, -diff)).sum() - 0.5 * lam * (t @ t))

    current = loglik(theta)
    for _ in range(max_iter):
        diff = theta[:, None] - theta[None, :]
        p = 1.0 / (1.0 + np.exp(-diff))  # p[i, j] = P(i beats j)
        grad = (wins * (1.0 - p)).sum(axis=1) - (wins.T * p).sum(axis=1) - lam * theta
        info = games * p * (1.0 - p)
        hess = info - np.diag(info.sum(axis=1)) - lam * np.eye(n)
        g, h = grad[free], hess[np.ix_(free, free)]
        if np.abs(g).max(initial=0.0) <= tol * max(1.0, games.sum()):
            break
        step = np.linalg.solve(h, -g)
        if np.abs(step).max() < 1e-15:
            break  # at float precision: the gradient test cannot get any tighter
        size = 1.0
        while True:
            trial = theta.copy()
            trial[free] += size * step
            value = loglik(trial)
            if value >= current - 1e-15 * abs(current) or size < 1e-10:
                break
            size /= 2
        theta, current = trial, value
    return theta - theta.mean()


def to_ratings(theta: np.ndarray, anchor_index: int | None = None) -> np.ndarray:
    """Natural strengths → ratings on the 400-point, base-10 scale anchored at 1000."""
    shift = theta[anchor_index] if anchor_index is not None else theta.mean()
    return ANCHOR + _TO_RATING * (theta - shift)


def bradley_terry(wins: np.ndarray, anchor_index: int | None = None) -> tuple[np.ndarray, bool]:
    """Ratings from a win matrix, and whether they are the exact MLE (no prior was needed)."""
    exact = mle_exists(wins)
    theta = fit_strengths(wins, prior_sd=None if exact else PRIOR_SD)
    return to_ratings(theta, anchor_index), exact


def bootstrap(outcomes: Sequence[Outcome], models: list[str], *, rounds: int = 1000,
              seed: int = 0, anchor_index: int | None = None,
              level: float = 0.95) -> tuple[np.ndarray, np.ndarray, int]:
    """Percentile intervals of each rating over `rounds` resamples of the votes (with replacement).

    Returns (low, high, resamples that needed the prior). Votes are grouped by (a, b, score) and
    each resample draws the group counts from a multinomial: the same distribution as resampling
    rows, without materialising them.
    """
    groups: dict[tuple[str, str, float], int] = {}
    for o in outcomes:
        groups[(o.a, o.b, o.score)] = groups.get((o.a, o.b, o.score), 0) + 1
    keys = list(groups)
    unique = [Outcome(*k) for k in keys]
    counts = np.array([groups[k] for k in keys], dtype=float)
    total = int(counts.sum())
    rng = np.random.default_rng(seed)
    draws = np.empty((rounds, len(models)))
    with_prior = 0
    for r in range(rounds):
        sample = rng.multinomial(total, counts / total)
        ratings, exact = bradley_terry(win_matrix(unique, models, sample), anchor_index)
        with_prior += not exact
        draws[r] = ratings
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail], axis=0)
    return low, high, with_prior


def online_elo(outcomes: Sequence[Outcome], models: list[str], k: float = ELO_K) -> np.ndarray:
    """Classic online Elo in vote order from 1000 (order-dependent; shown beside BT)."""
    pos = {m: i for i, m in enumerate(models)}
    r = np.full(len(models), ANCHOR)
    for o in outcomes:
        i, j = pos[o.a], pos[o.b]
        expected = 1.0 / (1.0 + BASE ** ((r[j] - r[i]) / SCALE))
        r[i] += k * (o.score - expected)
        r[j] -= k * (o.score - expected)
    return r
