"""FastChat's question.jsonl as shipped: some questions carry a reference for the first turn only
(`"reference": ["text", ""]`). They load; the empty turn is no reference for that turn."""

from __future__ import annotations

import json

import pytest

from tuneloop.errors import EvalError
from tuneloop.eval.judge import (
    has_reference,
    load_prompt,
    load_questions,
    load_references,
    prompt_name,
    single_messages,
)
from tuneloop.eval.judge_check import build_probes

# The real file's shape: question_id (int), category, two turns, reference on some categories.
ROWS = [
    {"question_id": 111, "category": "math",
     "turns": ["A square has sides of 3 cm. What is its area?", "And its perimeter?"],
     "reference": ["The area is 9 square centimetres.", "The perimeter is 12 cm."]},
    {"question_id": 112, "category": "reasoning",
     "turns": ["Sam is older than Kim. Who is younger?", "Explain how you know."],
     "reference": ["Kim is younger.", ""]},
    {"question_id": 113, "category": "coding",
     "turns": ["Write a Python function that reverses a string.", "Now make it recursive."],
     "reference": ["", ""]},
    {"question_id": 114, "category": "writing",
     "turns": ["Write a haiku about rain.", "Rewrite it about snow."]},
]


@pytest.fixture
def qfile(tmp_path):
    path = tmp_path / "question.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_empty_reference_turn_loads_as_no_reference_for_that_turn(qfile):
    qs = {q.id: q for q in load_questions(qfile)}
    assert qs["111"].reference == ["The area is 9 square centimetres.", "The perimeter is 12 cm."]
    assert qs["112"].reference == ["Kim is younger.", ""] and has_reference(qs["112"])
    assert qs["113"].reference is None and not has_reference(qs["113"])  # every turn empty
    assert qs["114"].reference is None
    assert qs["112"].category == "reasoning" and qs["112"].turns[1] == "Explain how you know."
    assert [prompt_name("single", qs[i]) for i in ("111", "112", "113", "114")] == [
        "single_multi_ref", "single_multi_ref", "single_multi", "single_multi"]
    text = single_messages(qs["112"], ["Kim.", "Sam is older."],
                           load_prompt("single_multi_ref"))[-1]["content"]
    assert "### Reference answer to turn 1:\nKim is younger." in text
    assert "Reference answer to turn 2" not in text  # the empty turn is not shown as a reference


def test_the_check_uses_the_reference_turn_and_the_answer_for_the_rest(qfile):
    qs = load_questions(qfile)
    answers = [["a1", "b1"], ["Kim is, as Sam is older.", "Because Sam is older than Kim."],
               ["def r(s): return s[::-1]", "def r(s): return s and r(s[1:]) + s[0]"],
               ["Rain taps the roof", "Snow hushes the road"]]
    probes, _ = build_probes(qs, answers)
    by_q = {p.question.id: p for p in probes if p.kind == "dont_know"}
    assert by_q["112"].good == ["Kim is younger.", "Because Sam is older than Kim."]
    assert by_q["112"].good_source == "reference+answers"
    assert by_q["111"].good_source == "reference" and by_q["113"].good_source == "answers"


def test_fastchat_reference_rows_with_an_empty_turn(tmp_path):
    """Reference-answer files (choices[0].turns) follow the same rule; a non-string still fails."""
    path = tmp_path / "ref.jsonl"
    path.write_text(json.dumps({"question_id": 112, "model_id": "gpt-4", "choices": [
        {"index": 0, "turns": ["Kim.", ""]}]}) + "\n" + json.dumps({
            "question_id": 113, "model_id": "gpt-4", "choices": [{"index": 0,
                                                                  "turns": ["", ""]}]}) + "\n")
    assert load_references(path) == {"112": ["Kim.", ""]}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question_id": 1, "turns": ["x"], "reference": [3]}) + "\n")
    with pytest.raises(EvalError) as info:
        load_questions(bad)
    assert info.value.where == f"{bad}:1" and "reference" in info.value.message()
