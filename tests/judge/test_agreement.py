"""Judge–human agreement maths on a synthetic vote set whose figures are known by construction."""

from __future__ import annotations

import pytest

from tuneloop.eval.agreement import Vote, agreement, cohen_kappa


def _votes() -> list[Vote]:
    """100 votes: humans say A 40, B 40, tie 20. The judge agrees on 30 A, 30 B, 10 ties; on
    the other 10 A votes it says B (5) and tie (5); on 10 B votes it says A; on 10 ties, A.
    It always names the first-shown answer in order AB, and prefers the longer answer."""
    votes = []

    def add(human, judge, k):
        for _ in range(k):
            i = len(votes)
            # answer A is longer in even votes (3x as long), B in odd ones (1.2x)
            len_a, len_b = (300, 100) if i % 2 == 0 else (100, 120)
            votes.append(Vote(f"p{i}", "m1", "m2", human, judge, len_a, len_b,
                              judge_ab="A", judge_ba="A" if i < 50 else "B"))

    add("A", "A", 30)
    add("A", "B", 5)
    add("A", "tie", 5)
    add("B", "B", 30)
    add("B", "A", 10)
    add("tie", "tie", 10)
    add("tie", "A", 10)
    return votes


def test_agreement_known_by_construction():
    votes = _votes()
    res = agreement(votes, n_boot=300, seed=1)
    assert res["n"] == 100
    assert res["agreement_with_ties"] == pytest.approx(70 / 100)
    # without ties: votes where neither said tie: A/A 30, A/B 5, B/B 30, B/A 10 → 60 of 75
    assert res["n_without_ties"] == 75
    assert res["agreement_without_ties"] == pytest.approx(60 / 75)
    # kappa by hand: p_o = .7; human marginals .4/.4/.2, judge .5/.35/.15 → p_e = .37
    assert res["cohen_kappa"] == pytest.approx((0.7 - 0.37) / (1 - 0.37))
    lo, hi = res["agreement_with_ties_ci95"]
    assert lo < 0.7 < hi and hi - lo < 0.3
    lo, hi = res["cohen_kappa_ci95"]
    assert lo < res["cohen_kappa"] < hi
    # position: AB always "A"; BA "A" for the first 50 → first shown wins 150 of 200 verdicts
    pos = res["position_bias"]
    assert pos["pairs"] == 100
    assert pos["first_shown_win_rate"] == pytest.approx(150 / 200)
    assert pos["first_shown_won_both_orders"] == pytest.approx(50 / 100)


def test_kappa_matches_sklearn_and_length_bias():
    from sklearn.metrics import cohen_kappa_score

    votes = _votes()
    assert cohen_kappa(votes) == pytest.approx(
        cohen_kappa_score([v.human for v in votes], [v.judge for v in votes]))
    # a judge that always picks the longer answer: longer win rate 1, in every length bucket
    longer = [Vote(v.prompt, "m1", "m2", v.human, "A" if v.len_a > v.len_b else "B",
                   v.len_a, v.len_b) for v in votes]
    lb = agreement(longer, n_boot=50)["length_bias"]
    assert lb["judge"] == {"n": 100, "longer_win_rate": 1.0}
    buckets = {tuple(b["relative_difference"]): b for b in lb["judge_by_length_difference"]}
    assert buckets[(0.1, 0.5)]["n"] == 50 and buckets[(0.5, None)]["n"] == 50
    assert buckets[(0.0, 0.1)]["n"] == 0 and buckets[(0.0, 0.1)]["longer_win_rate"] is None
    # humans: A wins among non-ties where... computed by counting directly
    human = [v for v in votes if v.human != "tie"]
    expect = sum((v.human == "A") == (v.len_a > v.len_b) for v in human) / len(human)
    assert lb["human"]["longer_win_rate"] == pytest.approx(expect)


def test_bad_outcome_is_refused():
    with pytest.raises(ValueError, match="human outcome"):
        Vote("p", "a", "b", "model_a", "A")
