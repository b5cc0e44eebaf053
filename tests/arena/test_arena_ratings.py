"""Rating maths against an independent reference: scikit-learn's unregularised logistic regression."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tuneloop.arena import ratings
from tuneloop.arena.results import summarise

TRUE = {"m-best": 1200.0, "m-good": 1100.0, "m-fair": 1040.0, "m-mid": 1000.0,
        "m-weak": 900.0, "m-worst": 780.0}


def synthetic_votes(n: int, seed: int = 7, tie_rate: float = 0.1) -> list[dict]:
    """Votes drawn from a Bradley-Terry model with the TRUE ratings (10% ties / both-bad)."""
    rng = np.random.default_rng(seed)
    names = list(TRUE)
    votes = []
    for k in range(n):
        i, j = rng.choice(len(names), 2, replace=False)
        a, b = names[i], names[j]
        p = 1.0 / (1.0 + 10 ** ((TRUE[b] - TRUE[a]) / 400))
        u = rng.random()
        if u < tie_rate:
            winner = "tie" if u < tie_rate / 2 else "both_bad"
        else:
            winner = "a" if rng.random() < p else "b"
        votes.append({"model_a": a, "model_b": b, "winner": winner, "rater": f"r{k % 5}",
                      "prompt_id": f"p{k % 40}"})
    return votes


def reference_ratings(votes: list[dict], models: list[str]) -> dict[str, float]:
    """BT by sklearn LogisticRegression (no penalty): one row per vote side, ties as half weights."""
    from sklearn.linear_model import LogisticRegression

    pos = {m: k for k, m in enumerate(models)}
    rows, ys, weights = [], [], []
    score = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}
    for v in votes:
        x = np.zeros(len(models))
        x[pos[v["model_a"]]], x[pos[v["model_b"]]] = 1.0, -1.0
        s = score[v["winner"]]
        for y, w in ((1, s), (0, 1.0 - s)):
            if w > 0:
                rows.append(x[1:])  # model 0's strength is pinned at 0 (identifiability)
                ys.append(y)
                weights.append(w)
    fit = LogisticRegression(C=np.inf, fit_intercept=False, solver="newton-cholesky",
                             tol=1e-14, max_iter=1000)
    fit.fit(np.array(rows), np.array(ys), sample_weight=np.array(weights))
    theta = np.concatenate([[0.0], fit.coef_[0]])
    rating = 1000 + 400 / math.log(10) * (theta - theta.mean())
    return dict(zip(models, rating.tolist()))


def test_bt_matches_sklearn_within_1e6():
    """BT ratings (ties as half wins) equal an unregularised logistic-regression fit within 1e-6."""
    votes = synthetic_votes(6000)
    models = sorted(TRUE)
    doc = summarise(votes, models, rounds=50, seed=0)
    ours = {r["model"]: r["rating"] for r in doc["ratings"]}
    ref = reference_ratings(votes, models)
    worst = max(abs(ours[m] - ref[m]) for m in models)
    print(f"BT parity vs sklearn: max |diff| = {worst:.2e} rating points")
    assert worst < 1e-6
    assert doc["mle_exists"] is True and doc["bootstrap_with_prior"] == 0
    assert abs(sum(ours.values()) / len(ours) - 1000.0) < 1e-9  # mean anchored at 1000
    # Ties drawn independently of strength pull ratings together, but never reorder them.
    assert [r["model"] for r in doc["ratings"]] == sorted(TRUE, key=TRUE.get, reverse=True)


def test_bt_recovers_known_strengths_within_its_intervals():
    """Votes drawn from known BT ratings (no ties): ranking recovered, 95% intervals cover truth."""
    votes = synthetic_votes(6000, seed=8, tie_rate=0.0)
    models = sorted(TRUE)
    doc = summarise(votes, models, rounds=1000, seed=0)
    assert [r["model"] for r in doc["ratings"]] == sorted(TRUE, key=TRUE.get, reverse=True)
    assert reference_ratings(votes, models) == pytest.approx(
        {r["model"]: r["rating"] for r in doc["ratings"]}, abs=1e-6)
    centre = sum(TRUE.values()) / len(TRUE) - 1000.0  # the truth, mean-anchored like the fit
    for r in doc["ratings"]:
        assert r["ci_low"] < r["rating"] < r["ci_high"]
        assert r["ci_low"] < TRUE[r["model"]] - centre < r["ci_high"], r


def test_anchor_model_sits_at_1000_and_differences_are_unchanged():
    """--anchor pins one model at exactly 1000; rating differences do not depend on the anchor."""
    votes = synthetic_votes(800, seed=3)
    models = sorted(TRUE)
    free = {r["model"]: r["rating"] for r in summarise(votes, models, rounds=20)["ratings"]}
    pinned = {r["model"]: r["rating"]
              for r in summarise(votes, models, rounds=20, anchor="m-mid")["ratings"]}
    assert pinned["m-mid"] == pytest.approx(1000.0, abs=1e-9)
    for m in models:
        assert pinned[m] - pinned["m-best"] == pytest.approx(free[m] - free["m-best"], abs=1e-7)


def test_bootstrap_is_reproducible_and_narrows_with_more_votes():
    """Same seed → same intervals; 4× the votes → intervals about half as wide."""
    models = sorted(TRUE)
    few = synthetic_votes(500, seed=11)
    a = summarise(few, models, rounds=300, seed=5)["ratings"]
    b = summarise(few, models, rounds=300, seed=5)["ratings"]
    assert [(r["ci_low"], r["ci_high"]) for r in a] == [(r["ci_low"], r["ci_high"]) for r in b]
    many = summarise(synthetic_votes(2000, seed=11), models, rounds=300, seed=5)["ratings"]
    width = {r["model"]: r["ci_high"] - r["ci_low"] for r in a}
    width_many = {r["model"]: r["ci_high"] - r["ci_low"] for r in many}
    ratio = sum(width_many.values()) / sum(width.values())
    assert 0.35 < ratio < 0.7, ratio


def test_hand_computed_elo_and_two_model_bt():
    """Elo K=4 step by hand; two models with 3:1 wins → BT difference 400·log10(3)."""
    outcomes = [ratings.Outcome("x", "y", 1.0), ratings.Outcome("x", "y", 0.5)]
    elo = ratings.online_elo(outcomes, ["x", "y"])
    first = 1000 + 4 * (1 - 0.5)
    expected_x = 1 / (1 + 10 ** ((2000 - first - first) / 400))
    assert elo[0] == pytest.approx(first + 4 * (0.5 - expected_x), abs=1e-12)
    assert elo[0] + elo[1] == pytest.approx(2000.0)
    wins = np.array([[0.0, 3.0], [1.0, 0.0]])
    values, exact = ratings.bradley_terry(wins)
    assert exact and values[0] - values[1] == pytest.approx(400 * math.log10(3), abs=1e-9)


def test_no_mle_uses_prior_and_says_so():
    """A model that never lost has no finite MLE: ratings stay finite, ordered, and flagged."""
    votes = [{"model_a": "a", "model_b": "b", "winner": "a", "rater": "r", "prompt_id": "p"}] * 5
    votes += [{"model_a": "b", "model_b": "c", "winner": w, "rater": "r", "prompt_id": "p"}
              for w in ("a", "a", "b")]
    doc = summarise(votes, ["a", "b", "c"], rounds=50)
    assert doc["mle_exists"] is False and doc["bootstrap_with_prior"] > 0
    got = {r["model"]: r["rating"] for r in doc["ratings"]}
    assert all(math.isfinite(v) for v in got.values())
    assert got["a"] > got["b"] > got["c"]
