"""Judge verdict parsing and aggregation on recorded judge outputs (R17, R18, R19)."""

from __future__ import annotations

import json

import pytest

from tuneloop.errors import EvalError
from tuneloop.eval.judge import (
    JudgeVerdict,
    Question,
    load_prompt,
    load_questions,
    pair_messages,
    prompt_name,
    single_messages,
)
from tuneloop.eval.judge_stats import (
    PairOutcome,
    bootstrap_ci,
    combine_pair,
    parse_pair,
    parse_pass,
    parse_rating,
    summarize_pairs,
    summarize_scores,
)

# Outputs in the shape real judges (GPT-4-class, MT-Bench style) produce, plus broken ones.
RECORDED_SINGLE = {
    "The assistant gives a correct, concise answer with an example. Rating: [[8]]": 8.0,
    "Mostly right but misses the edge case.\n\nRating: [[6.5]]": 6.5,
    "Rating: [[ 3 ]]": 3.0,
    # Restates the format placeholder before the verdict: the placeholder is not a number.
    'Following the format "[[rating]]": Rating: [[9]]': 9.0,
    # Repeats the same rating twice: still one verdict.
    "Rating: [[4]]. Final: [[4]]": 4.0,
    # Malformed → None, never 0 (R18).
    "I would rate this response 7 out of 10.": None,
    "Rating: [7]": None,
    "Rating: [[seven]]": None,
    "Rating: [[11]]": None,
    "Rating: [[0]]": None,
    "Rating: [[5]] ... on reflection, Rating: [[7]]": None,  # two different ratings: ambiguous
    "": None,
}

RECORDED_PAIR = {
    "Assistant A explains the cause; B only restates the question. [[A]]": "A",
    "Both are fine but B is more accurate.\n\nFinal verdict: [[B]]": "B",
    "They are equally good. [[C]]": "C",
    "[[ A ]]": "A",
    "My verdict: Assistant A": None,
    "[[A]] or maybe [[B]]": None,
    "[A]": None,
    "[[D]]": None,
}


@pytest.mark.parametrize(("raw", "expected"), list(RECORDED_SINGLE.items()))
def test_parse_rating_recorded(raw, expected):
    """R18: anything but one clear [[N]] in 1..10 is unparseable (None), not a score."""
    assert parse_rating(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), list(RECORDED_PAIR.items()))
def test_parse_pair_recorded(raw, expected):
    assert parse_pair(raw) == expected


def test_parse_pass():
    assert parse_pass("meets it. Rating: [[8]] Verdict: [[PASS]]") is True
    assert parse_pass("Verdict: [[fail]]") is False
    assert parse_pass("[[PASS]] [[FAIL]]") is None
    assert parse_pass("pass") is None


def test_both_orders_rule_and_flips():
    """R17: same winner in both orders wins; disagreement or a tie in either order is a tie."""
    # verdict_ba is in shown-order letters: with B shown first, "[[B]]" means model A won.
    assert combine_pair("A", "B") == PairOutcome("A", False)
    assert combine_pair("B", "A") == PairOutcome("B", False)
    assert combine_pair("A", "A") == PairOutcome("tie", True)  # position bias: first always wins
    assert combine_pair("B", "B") == PairOutcome("tie", True)
    assert combine_pair("A", "C") == PairOutcome("tie", True)
    assert combine_pair("C", "C") == PairOutcome("tie", False)
    assert combine_pair(None, "A") == PairOutcome(None, False)
    assert combine_pair("A", None).outcome is None


def test_pairwise_summary_from_recorded_outputs():
    """Recorded (AB, BA) judge outputs → wins, ties, exclusions, flip rate, win rate."""
    recorded = [
        ("A is better. [[A]]", "B is better. [[B]]"),  # consistent: model A wins
        ("[[A]]", "[[B]]"),  # consistent: model A wins
        ("[[B]]", "[[A]]"),  # consistent: model B wins
        ("[[A]]", "[[A]]"),  # position flip → tie
        ("[[C]]", "[[C]]"),  # tie, no flip
        ("[[A]]", "I cannot decide."),  # unparseable → excluded, counted
    ]
    outcomes = [combine_pair(parse_pair(a), parse_pair(b)) for a, b in recorded]
    s = summarize_pairs(outcomes, seed=1)
    assert (s["wins"], s["losses"], s["ties"], s["n"], s["excluded"]) == (2, 1, 2, 5, 1)
    assert s["win_rate"] == pytest.approx((2 + 0.5 * 2) / 5)
    assert s["flip_rate"] == pytest.approx(1 / 5)
    lo, hi = s["ci95"]
    assert 0.0 <= lo <= s["win_rate"] <= hi <= 1.0


def test_single_summary_excludes_unparseable():
    """R18: None scores are counted apart, and the mean is over parsed scores only."""
    scores = [parse_rating(r) for r in RECORDED_SINGLE]
    s = summarize_scores(scores)
    parsed = [v for v in RECORDED_SINGLE.values() if v is not None]
    assert s["n"] == len(parsed) and s["unparseable"] == len(scores) - len(parsed)
    assert s["mean"] == pytest.approx(sum(parsed) / len(parsed))
    assert summarize_scores([None, None]) == {"n": 0, "unparseable": 2, "mean": None,
                                              "ci95": None}


def test_bootstrap_ci_matches_scipy():
    """Our seeded percentile bootstrap agrees with scipy.stats.bootstrap within noise."""
    import numpy as np
    from scipy.stats import bootstrap

    rng = np.random.default_rng(0)
    data = rng.integers(0, 3, size=80) / 2  # win/tie/loss points
    lo, hi = bootstrap_ci(list(data), n_boot=4000, seed=3)
    ref = bootstrap((data,), np.mean, n_resamples=4000, method="percentile",
                    random_state=3).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.03)
    assert hi == pytest.approx(ref.high, abs=0.03)
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    assert bootstrap_ci([], seed=0) is None


def test_prompts_are_package_data_and_fill():
    for name in ("single", "single_ref", "single_multi", "single_multi_ref", "pair", "pair_ref",
                 "pair_multi", "pair_multi_ref", "rubric"):
        p = load_prompt(name)
        assert p.prompt.strip()
    q = Question("q1", ["What is 2+2?", "And times 3?"], reference=["4", "12"])
    assert prompt_name("single", q) == "single_multi_ref"
    assert prompt_name("pairwise", Question("q", ["x"])) == "pair"
    msgs = single_messages(q, ["4", "12 {not a field}"], load_prompt(prompt_name("single", q)))
    text = msgs[-1]["content"]
    assert "And times 3?" in text and "12 {not a field}" in text and "[[rating]]" in (
        text + msgs[0]["content"])
    assert "Reference answer to turn 2" in text
    pm = pair_messages(Question("q", ["hi"]), ["first"], ["second"], load_prompt("pair"))
    body = pm[-1]["content"]
    assert body.index("first") < body.index("second")
    assert "Assistant A" in body and "Assistant B" in body


def test_prompt_override_dir(tmp_path):
    (tmp_path / "single.yaml").write_text("system: ''\nprompt: 'Grade: {conversation}'\n")
    p = load_prompt("single", tmp_path)
    msgs = single_messages(Question("q", ["x?"]), ["y"], p)
    assert msgs == [{"role": "user", "content": msgs[0]["content"]}]
    assert msgs[0]["content"].startswith("Grade: [Question]\nx?")


def test_question_file_errors_name_file_and_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "question": "hi"}\n{"id": "b", "turns": []}\n')
    with pytest.raises(EvalError, match=r"q\.jsonl:2: field 'turns'"):
        load_questions(path)
    path.write_text('{"id": "a", "question": "hi"}\n{oops\n')
    with pytest.raises(EvalError, match=r"q\.jsonl:2: invalid JSON"):
        load_questions(path)
    path.write_text('{"id": "a", "question": "hi"}\n{"id": "a", "question": "x"}\n')
    with pytest.raises(EvalError, match="duplicate id 'a'"):
        load_questions(path)
    path.write_text(json.dumps({"id": 1, "turns": ["a", "b"], "reference": "r",
                                "category": "math"}) + "\n")
    [q] = load_questions(path)
    assert (q.id, q.turns, q.reference, q.category) == ("1", ["a", "b"], ["r"], "math")


def test_judge_rubric_with_recorded_outputs():
    """judge_rubric parses score and pass/fail; unparseable stays None (R18)."""
    from tuneloop.eval.judge import judge_rubric, rubric_judge_fn

    class Recorded:
        name = "recorded"

        def __init__(self, raw):
            self.raw, self.seen = raw, []

        def generate(self, prompts, params):
            self.seen.extend(prompts)
            return [self.raw for _ in prompts]

    judge = Recorded("Clear and correct. Rating: [[9]]\nVerdict: [[PASS]]")
    v = judge_rubric(judge, "What is 2+2?", "4", "Must say 4", reference="4")
    assert v == JudgeVerdict(9.0, True, judge.raw)
    shown = judge.seen[0][-1]["content"]
    assert "Must say 4" in shown and "What is 2+2?" in shown and "Reference Answer" in shown
    assert judge_rubric(Recorded("Rating: [[3]]"), "q", "a", "r").passed is False
    assert judge_rubric(Recorded("Rating: [[8]]"), "q", "a", "r").passed is True
    bad = judge_rubric(Recorded("looks good to me"), "q", "a", "r")
    assert (bad.score, bad.passed) == (None, None)
    ok, why = rubric_judge_fn(Recorded("meh"))("r", "q", "a", None)
    assert ok is False and "unparseable" in why
