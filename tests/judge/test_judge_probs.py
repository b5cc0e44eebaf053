"""Verdicts from the judge's token probabilities: equal to a hand computation from the tiny
model's logits (single and pairwise, both orders), the 1/10 split, and a scripted remote judge
with and without `top_logprobs` (probabilities vs parsing, R18)."""

from __future__ import annotations

import json
import math

import pytest
from fakeserver import chat_response, serve_app
from fastapi import FastAPI, Request

from tuneloop.backends import GenParams, TokenChoice
from tuneloop.backends.local import LocalGenerator
from tuneloop.eval.judge import Question, run_judge
from tuneloop.eval.judge_probs import (
    PAIR_LABELS,
    SINGLE_LABELS,
    token_label,
    verdict_distribution,
)


class _Fixed:
    """An answering 'model' with canned answers (the judge is what is under test)."""

    def __init__(self, name: str, answer: str):
        self.name, self.answer = name, answer

    def generate(self, prompts, params):
        return [self.answer for _ in prompts]


QUESTIONS = [Question("q1", ["What is the capital of France?"], category="geo"),
             Question("q2", ["Name a colour."], category="misc")]


def _hand_distribution(model, tokenizer, messages, labels):
    """From the logits: P(label) over every vocabulary token whose text is that label."""
    import torch

    head = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True,
                                         tokenize=False)
    # the conversation with the generation prompt, then the assistant text to continue
    ids = (tokenizer.encode(head, add_special_tokens=False)
           + tokenizer.encode(messages[-1]["content"], add_special_tokens=False))
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].float()
    probs = logits.softmax(-1)
    mass = {}
    for tok_id in range(len(tokenizer)):
        label = tokenizer.decode([tok_id]).strip().lstrip("[").rstrip("]").strip()
        if label in labels:
            mass[label] = mass.get(label, 0.0) + probs[tok_id].item()
    greedy = tokenizer.decode([int(logits.argmax())])
    total = sum(mass.values())
    return {k: mass.get(k, 0.0) / total for k in labels}, greedy


@pytest.fixture(scope="module")
def tiny_judge(tiny_model_dir):
    from tuneloop.models import load_model

    model, tokenizer = load_model(str(tiny_model_dir))
    gen = LocalGenerator(str(tiny_model_dir))
    return gen, model.eval(), tokenizer


def test_single_probability_verdicts_equal_hand_computation(tiny_judge):
    """Expected rating = Σ r·P(r), P from the model's next-token distribution after the prefix."""
    from tuneloop.eval.judge import forced_verdict, load_prompt, single_messages

    gen, model, tokenizer = tiny_judge
    run = run_judge(QUESTIONS, ["good", "bad"], gen, mode="single", explanation=False,
                    top_logprobs=len(tokenizer), show_progress=False,
                    generators={"good": _Fixed("good", "Paris is the capital."),
                                "bad": _Fixed("bad", "No idea.")})
    assert run.summary["verdicts_by_method"] == {"probability": 4, "parsed": 0,
                                                 "unparseable": 0}
    prompt = load_prompt("single")
    answers = {"good": "Paris is the capital.", "bad": "No idea."}
    for j in run.judgments:
        q = next(q for q in QUESTIONS if q.id == j["question_id"])
        msgs, _ = forced_verdict(single_messages(q, [answers[j["model"]]], prompt), "single")
        expect, greedy = _hand_distribution(model, tokenizer, msgs, SINGLE_LABELS)
        if token_label(greedy) == "1":
            pytest.skip("greedy '1' needs the 10-split; covered by the unit test below")
        assert j["method"] == "probability"
        for k in SINGLE_LABELS:
            assert math.isclose(j["probs"][k], expect[k], abs_tol=1e-5), (k, j["probs"], expect)
        rating = sum(int(k) * p for k, p in expect.items())
        assert math.isclose(j["verdict"], rating, abs_tol=1e-4)
    by = {r["model"]: r for r in run.summary["results"]}
    mine = [j["verdict"] for j in run.judgments if j["model"] == "good"]
    assert math.isclose(by["good"]["mean"], sum(mine) / 2, abs_tol=1e-6)
    assert by["good"]["n"] == 2 and by["good"]["unparseable"] == 0
    assert set(by["good"]["by_category"]) == {"geo", "misc"}


def test_pairwise_probabilities_both_orders_equal_hand_computation(tiny_judge):
    """P(A), P(B), P(tie) per order from the logits; the letter is the argmax; both-orders rule."""
    from tuneloop.eval.judge import forced_verdict, load_prompt, pair_messages
    from tuneloop.eval.judge_stats import combine_pair

    gen, model, tokenizer = tiny_judge
    answers = {"good": "Paris is the capital.", "bad": "No idea."}
    run = run_judge(QUESTIONS, ["good", "bad"], gen, mode="pairwise", explanation=False,
                    top_logprobs=len(tokenizer), show_progress=False,
                    generators={k: _Fixed(k, v) for k, v in answers.items()})
    assert len(run.judgments) == 4
    prompt = load_prompt("pair")
    letters = {}
    pa = []
    for j in run.judgments:
        q = next(q for q in QUESTIONS if q.id == j["question_id"])
        first, second = ("good", "bad") if j["order"] == "AB" else ("bad", "good")
        msgs, _ = forced_verdict(pair_messages(q, [answers[first]], [answers[second]], prompt),
                                 "pairwise")
        expect, _ = _hand_distribution(model, tokenizer, msgs, PAIR_LABELS)
        assert j["method"] == "probability"
        for k in PAIR_LABELS:
            assert math.isclose(j["probs"][k], expect[k], abs_tol=1e-5)
        assert j["verdict"] == max(PAIR_LABELS, key=lambda k: expect[k])
        letters[(q.id, j["order"])] = j["verdict"]
        pa.append(expect["A"] if j["order"] == "AB" else expect["B"])
    [r] = run.summary["results"]
    outcomes = [combine_pair(letters[(q.id, "AB")], letters[(q.id, "BA")]).outcome
                for q in QUESTIONS]
    assert r["wins"] == outcomes.count("A") and r["losses"] == outcomes.count("B")
    assert r["ties"] == outcomes.count("tie")
    assert math.isclose(r["p_a_better"], sum(pa) / len(pa), abs_tol=1e-5)


def test_verdict_after_an_unfinished_explanation_equals_hand_computation(tiny_judge):
    """A local judge that explains but writes no verdict: its explanation is continued with
    'Rating: [[' and the verdict distribution read there (equal to the logits by hand)."""
    from tuneloop.eval.judge import SINGLE_PREFIX, load_prompt, single_messages

    gen, model, tokenizer = tiny_judge
    run = run_judge(QUESTIONS[:1], ["good"], gen, mode="single", show_progress=False,
                    judge_params=GenParams(max_tokens=6), top_logprobs=len(tokenizer),
                    generators={"good": _Fixed("good", "Paris.")})
    [j] = run.judgments
    assert j["method"] == "probability" and j["verdict_prefix_after_explanation"]
    explanation = j["raw"][: j["raw"].index("\n\n" + SINGLE_PREFIX)]
    msgs = single_messages(QUESTIONS[0], ["Paris."], load_prompt("single"))
    msgs = [*msgs, {"role": "assistant", "content": explanation + "\n\n" + SINGLE_PREFIX}]
    expect, greedy = _hand_distribution(model, tokenizer, msgs, SINGLE_LABELS)
    if token_label(greedy) == "1":
        pytest.skip("greedy '1' needs the 10-split; covered by the unit test below")
    for k in SINGLE_LABELS:
        assert math.isclose(j["probs"][k], expect[k], abs_tol=1e-5)


def _tok(text, *alts):
    return TokenChoice(text, 0.0, tuple((t, math.log(p)) for t, p in alts))


def test_distribution_after_an_explanation_and_the_ten_split():
    """The verdict is read at the last '[[' + label; '1' then '0' splits the '1' mass."""
    tokens = [_tok("Good"), _tok(" answer"), _tok(" [["), _tok("8", ("8", 0.5), ("7", 0.3),
                                                             ("x", 0.2)), _tok("]]")]
    d = verdict_distribution(tokens, "single")
    assert d is not None and math.isclose(d.probs["8"], 0.625) and math.isclose(d.mass, 0.8)
    assert math.isclose(d.expected_rating(), 0.625 * 8 + 0.375 * 7)
    quoted = [_tok("Format [[5]]"), _tok(" so [["), _tok("1", ("1", 0.6), ("9", 0.4)),
              _tok("0", ("0", 0.75), ("]]", 0.25)), _tok("]]")]
    d = verdict_distribution(quoted, "single")
    assert math.isclose(d.probs["10"], 0.45) and math.isclose(d.probs["1"], 0.15)
    assert math.isclose(d.probs["9"], 0.4)
    assert verdict_distribution([_tok("no verdict here")], "single") is None
    pair = [_tok("B is better. [["), _tok("B", ("B", 0.7), ("A", 0.2), ("C", 0.1))]
    d = verdict_distribution(pair, "pairwise")
    assert d.letter() == "B" and math.isclose(d.probs["C"], 0.1)


def _scripted_judge(with_logprobs: bool, log: list) -> FastAPI:
    """A judge endpoint: rates 'GOOD' answers 8 (P 0.6, else 9) and others 3; pairwise prefers
    GOOD; answers top_logprobs only `with_logprobs`."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        log.append(body)
        text = "\n".join(m["content"] for m in body["messages"])
        if "Assistant B" in text:
            a_good = "Assistant A's Answer]\nGOOD" in text
            verdict = "A" if a_good else "B"
            pieces = ["Better one. ", "[[", verdict, "]]"]
            alts = {2: [(verdict, math.log(0.8)), ("C", math.log(0.2))]}
        elif "GOOD" in text:
            pieces = ["Fine. Rating: ", "[[", "8", "]]"]
            alts = {2: [("8", math.log(0.6)), ("9", math.log(0.4))]}
        else:
            pieces = ["Weak. Rating: ", "[[", "3", "]]"]
            alts = {2: [("3", math.log(0.9)), ("2", math.log(0.1))]}
        resp = chat_response("".join(pieces), "judge")
        if with_logprobs and body.get("logprobs"):
            resp["choices"][0]["logprobs"] = {"content": [
                {"token": p, "logprob": alts.get(i, [(p, 0.0)])[0][1], "bytes": None,
                 "top_logprobs": [{"token": t, "logprob": v, "bytes": None}
                                  for t, v in alts.get(i, [(p, 0.0)])]}
                for i, p in enumerate(pieces)], "refusal": None}
        return resp

    return app


@pytest.mark.parametrize("with_logprobs", [True, False])
def test_scripted_remote_judge_with_and_without_top_logprobs(with_logprobs, tmp_path):
    """With top_logprobs: probability verdicts (8·0.6+9·0.4 = 8.4); without: parsed [[8]]."""
    from tuneloop.backends import make_generator

    log: list = []
    qs = [Question("q1", ["Say hi."]), Question("q2", ["Say bye."])]
    gens = {"good": _Fixed("good", "GOOD reply"), "bad": _Fixed("bad", "meh")}
    with serve_app(_scripted_judge(with_logprobs, log)) as url:
        judge = make_generator({"type": "openai", "base_url": f"{url}/v1", "model": "judge",
                                "cache": str(tmp_path / "c.sqlite")})
        single = run_judge(qs, ["good", "bad"], judge, mode="single", show_progress=False,
                           generators=gens)
        pair = run_judge(qs, ["good", "bad"], judge, mode="pairwise", show_progress=False,
                         generators=gens)
    assert all(b.get("logprobs") is True and b.get("top_logprobs") == 20 for b in log)
    by = {r["model"]: r for r in single.summary["results"]}
    method = "probability" if with_logprobs else "parsed"
    assert single.summary["verdicts_by_method"][method] == 4
    assert pair.summary["verdicts_by_method"][method] == 4
    if with_logprobs:
        assert math.isclose(by["good"]["mean"], 8.4) and math.isclose(by["bad"]["mean"], 2.9)
        assert by["good"]["mean_distribution"]["8"] == pytest.approx(0.6)
        [r] = pair.summary["results"]
        assert r["p_a_better"] == pytest.approx(0.8) and r["p_tie"] == pytest.approx(0.2)
    else:
        assert by["good"]["mean"] == 8.0 and by["bad"]["mean"] == 3.0
        assert by["good"]["mean_distribution"] is None
        [r] = pair.summary["results"]
        assert r["p_a_better"] is None
    [r] = pair.summary["results"]
    assert r["wins"] == 2 and r["losses"] == 0  # GOOD preferred in both orders
    rows = [json.loads(json.dumps(j)) for j in single.judgments]
    assert all(j["method"] == method for j in rows)
