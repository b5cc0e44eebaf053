"""The pieces of a round that need no model: the extractive writer, the house style, the best
round, and the significance maths against scipy and hand computation."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest

from tuneloop.backends import make_generator
from tuneloop.backends.extractive import answer_forms, questions_for, statements
from tuneloop.data.records import Record
from tuneloop.errors import UsageError
from tuneloop.eval.stats import mcnemar_exact, paired_verdict, wilson_interval
from tuneloop.index import best_round
from tuneloop.iterate import answer_style, apply_style

CHUNK = """## Places

- The boathouse door code is 4719.
- The co-op was founded by Wenna Gorrick.
- Members may dive to at most 18 metres.
The director of the co-op is Odalys Penhallow. Visitors wear an amber badge.
"""


def test_statements_are_bullets_and_sentences_without_headings():
    assert statements(CHUNK) == [
        "The boathouse door code is 4719.", "The co-op was founded by Wenna Gorrick.",
        "Members may dive to at most 18 metres.", "The director of the co-op is Odalys Penhallow.",
        "Visitors wear an amber badge."]


def test_questions_ask_one_fact_in_different_frames_and_wordings():
    qs = questions_for("The boathouse door code is 4719.", "4719", 6)
    assert len(qs) == 6 and len(set(qs)) == 6
    assert "What is the boathouse door code?" in qs
    assert any("the code of the boathouse door" in q for q in qs)  # the subject reworded
    assert not any("4719" in q for q in qs)  # the answer is never in the question
    assert questions_for("The co-op was founded by Wenna Gorrick.", "Wenna Gorrick", 2) == [
        "Who was the co-op founded by?", "By whom was the co-op founded?"]
    assert questions_for("Members may dive to at most 18 metres.", "18", 1) == [
        "Members may dive to at most how many metres?"]
    assert questions_for("The director of the co-op is Odalys Penhallow.", None, 1) == [
        "Who is the director of the co-op?"]
    assert answer_forms("The boathouse door code is 4719.") == [
        "The boathouse door code: 4719.", "The boathouse door code is 4719."]


def test_the_extractive_generator_writes_about_the_stated_value_and_refuses_other_work():
    gen = make_generator("extractive")
    prompt = (f'Write up to 3 questions.\n\nFocus on: facts about dive. The answer states: 18\n'
              f'\nText:\n"""\n{CHUNK}\n"""')
    [reply] = gen.generate([[{"role": "user", "content": prompt}]], None)
    assert reply.count("Question:") == 3 and reply.count("18 metres") == 3
    judge = ('Check whether the answer is fully supported by the source text.\n"""\n' + CHUNK
             + '\n"""\nQuestion: q\nAnswer: Members may dive to at most 30 metres.')
    [verdict] = gen.generate([[{"role": "user", "content": judge}]], None)
    assert verdict.endswith("[[NO]]") and "30" in verdict
    with pytest.raises(UsageError, match="cannot write new instructions"):
        gen.generate([[{"role": "user", "content": "Here is a numbered list of varied tasks"}]],
                     None)


def _row(answer: str) -> Record:
    return Record(messages=[{"role": "user", "content": "q"},
                            {"role": "assistant", "content": answer}], source="f", line=1)


def test_answer_style_is_what_nearly_all_answers_share():
    rows = [_row(f"Answer: {w} {i}. — Tide Desk") for i, w in enumerate(["a", "b", "c"] * 4)]
    style = answer_style(rows)
    assert style == {"prefix": "Answer: ", "suffix": " — Tide Desk"}
    assert apply_style("The code is 4719.", style) == "Answer: The code is 4719. — Tide Desk"
    assert apply_style("Answer: x — Tide Desk", style) == "Answer: x — Tide Desk"
    # no shared wrapper → nothing added
    plain = answer_style([_row(f"{w} reply") for w in ("one", "two", "three", "four")])
    assert plain == {"prefix": "", "suffix": " reply"}
    assert answer_style([_row(f"x{i} y{i}") for i in range(5)]) == {"prefix": "", "suffix": ""}


def test_the_best_round_is_the_highest_pass_rate_and_the_earliest_of_equals():
    rounds = [{"round": 1, "pass_rate": 0.5}, {"round": 2, "pass_rate": 0.6, "verdict": "improved"},
              {"round": 3, "pass_rate": 0.6, "verdict": "no change"},
              {"round": 4, "pass_rate": 0.4, "verdict": "regression"}]
    assert best_round(rounds)["round"] == 2
    v = paired_verdict({"a": True, "b": False, "c": False}, {"a": False, "b": True, "c": True})
    assert (v.fixed, v.broken, v.verdict) == (["b", "c"], ["a"], "improved")
    assert paired_verdict({"a": True}, {"a": False}).verdict == "regression"
    assert paired_verdict({"a": True, "b": False}, {"a": False, "b": True}).verdict == "no change"


@pytest.mark.parametrize(("fixed", "broken"), [(0, 0), (5, 5), (6, 0), (9, 6), (1, 12), (30, 17)])
def test_mcnemar_exact_equals_the_binomial_test_and_a_hand_sum(fixed, broken):
    n = fixed + broken
    expected = 1.0 if n == 0 else binomtest(fixed, n, 0.5).pvalue
    assert mcnemar_exact(fixed, broken) == pytest.approx(expected, abs=1e-12)
    if n:  # two-sided: twice the smaller tail, capped at 1
        k = min(fixed, broken)
        tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
        assert mcnemar_exact(fixed, broken) == pytest.approx(min(1.0, 2 * tail), abs=1e-12)


def test_wilson_interval_matches_a_hand_computation():
    lo, hi = wilson_interval(23, 43)
    p, z, n = 23 / 43, 1.959963984540054, 43
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((centre - half, centre + half))
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] > 0.25
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_synth_docs_runs_offline_with_the_extractive_generator(tmp_path):
    """The documented product path: `synth docs --generator extractive` writes judged rows whose
    answers are statements of the document, with no model anywhere."""
    import json

    from tuneloop.cli import main

    doc = tmp_path / "places.md"
    doc.write_text(CHUNK, encoding="utf-8")
    assert main(["synth", "docs", str(doc), "--generator", "extractive", "--out",
                 str(tmp_path / "out"), "--questions", "3", "--no-progress"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    assert all(r["messages"][1]["content"] in statements(CHUNK) for r in rows)
    assert all(r["meta"]["generator"] == "extractive" for r in rows)
