"""The judge's discrimination check against scripted OpenAI-compatible judges on 127.0.0.1.

One judge reads the reference and, through top_logprobs, prefers (single: rates high) the answer
equal to it; another always gives the same verdict. The first passes the check, the second
fails it, and `eval judge` says so (and exits non-zero with --strict).
"""

from __future__ import annotations

import json
import math
import re

import pytest
from fakeserver import chat_response, serve_app
from fastapi import FastAPI, Request

from tuneloop.cli import main
from tuneloop.eval.judge import Question
from tuneloop.eval.judge_check import BAD_KINDS, DONT_KNOW, build_probes, judge_discrimination

QUESTIONS = [
    {"id": "q1", "question": "What is the capital of France?",
     "reference": "The capital of France is Paris, on the river Seine."},
    {"id": "q2", "question": "Name the three primary colours of light.",
     "reference": "The primary colours of light are red, green and blue."},
    {"id": "q3", "question": "How many days are in a leap year?",
     "reference": "A leap year has three hundred and sixty six days."},
    {"id": "q4", "turns": ["Pick a prime under ten.", "Now double it."],
     "reference": ["Seven is a prime number under ten.", "Doubled, seven becomes fourteen."]},
]


def _answer_of(text: str, label: str = "") -> str:
    """The answer the judge prompt shows (single-turn block, or every turn of a conversation)."""
    who = f"Assistant {label}" if label else "Assistant"
    m = re.search(rf"\[The Start of {who}'s Answer\]\n(.*?)\n\[The End of {who}'s Answer\]",
                  text, re.DOTALL)
    if m:
        return m.group(1)
    return "\n".join(re.findall(rf"### {who}:\n(.*?)(?=\n\n###|\n\n<\|The End)", text,
                                re.DOTALL))


def _references(text: str) -> str:
    m = re.search(r"\[The Start of Reference Answer\]\n(.*?)\n\[The End of Reference Answer\]",
                  text, re.DOTALL)
    if m:
        return m.group(1)
    return "\n".join(re.findall(r"### Reference answer to turn \d+:\n(.*?)(?=\n\n###|\n\n<\|The End)",
                                text, re.DOTALL))


def scripted_judge(kind: str, log: list) -> FastAPI:
    """kind "reference": ratings/preferences from how the answer matches the reference, with
    top_logprobs; kind "constant": always [[5]] / [[A]], whatever it is shown."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        log.append(body)
        text = "\n".join(m["content"] for m in body["messages"])
        pairwise = "Assistant B" in text
        if kind == "constant":
            label, alts = ("A", [("A", 0.0)]) if pairwise else ("5", [("5", 0.0)])
        elif pairwise:
            ref = _references(text)
            label = "A" if _answer_of(text, "A") == ref else "B"
            alts = [(label, math.log(0.9)), ("C", math.log(0.1))]
        else:
            good = _answer_of(text) == _references(text)
            label = "9" if good else "2"
            alts = [(label, math.log(0.7)), ("8" if good else "3", math.log(0.3))]
        pieces = ["Judged. Verdict: ", "[[", label, "]]"]
        resp = chat_response("".join(pieces), "judge")
        if body.get("logprobs"):
            resp["choices"][0]["logprobs"] = {"content": [
                {"token": p, "logprob": 0.0, "bytes": None,
                 "top_logprobs": [{"token": t, "logprob": v, "bytes": None}
                                  for t, v in (alts if i == 2 else [(p, 0.0)])]}
                for i, p in enumerate(pieces)], "refusal": None}
        return resp

    return app


@pytest.fixture
def qfile(tmp_path):
    q = tmp_path / "questions.jsonl"
    q.write_text("".join(json.dumps(r) + "\n" for r in QUESTIONS))
    return q


def _questions() -> list[Question]:
    out = []
    for r in QUESTIONS:
        ref = r["reference"]
        out.append(Question(r["id"], r.get("turns") or [r["question"]],
                            ref if isinstance(ref, list) else [ref]))
    return out


def test_probes_are_the_documented_bad_answers():
    """Per question: "I don't know.", empty, the next question's good answer, a truncation."""
    qs = _questions()
    probes, skipped = build_probes(qs)
    assert len(probes) == 4 * len(BAD_KINDS) and not skipped
    q1 = {p.kind: p for p in probes if p.question.id == "q1"}
    assert q1["dont_know"].bad == [DONT_KNOW] and q1["empty"].bad == [""]
    assert q1["other_question"].bad == [QUESTIONS[1]["reference"]]
    assert q1["truncated"].bad == ["The capital of"]  # 10 words → the first 3
    assert all(p.good_source == "reference" for p in probes)
    q4 = {p.kind: p for p in probes if p.question.id == "q4"}
    assert len(q4["dont_know"].bad) == 2  # every turn replaced
    # Without references, the judged answers are the good ones; a question with neither is
    # skipped and counted, not silently left out.
    bare = [Question("a", ["Say hi."]), Question("b", ["Say bye."])]
    probes, skipped = build_probes(bare, [["Hello there, nice to meet you today."], [""]])
    assert {p.kind for p in probes} == {"dont_know", "empty", "truncated"}
    assert skipped == {"no_good_answer": 4, "other_question": 1}


@pytest.mark.parametrize("mode", ["single", "pairwise"])
def test_a_judge_preferring_the_references_passes(mode, tmp_path):
    from tuneloop.backends import make_generator

    log: list = []
    with serve_app(scripted_judge("reference", log)) as url:
        judge = make_generator({"type": "openai", "base_url": f"{url}/v1", "model": "judge",
                                "cache": str(tmp_path / "c.sqlite")})
        check = judge_discrimination(judge, _questions(), mode=mode)
    s = check.summary
    assert s["n"] == 16 and s["correct"] == 16 and s["share"] == 1.0
    assert s["trusted"] is True and s["verdict"] == "discriminating"
    assert s["ci95"][0] > 0.5 and s["ci95"][1] == 1.0
    assert all(j["method"] == "probability" for j in check.judgments)  # from top_logprobs
    assert len(log) == (4 + 16 if mode == "single" else 32)
    assert s["by_kind"]["truncated"] == {"n": 4, "correct": 4}
    assert "judge check passed" in s["message"]


@pytest.mark.parametrize("mode", ["single", "pairwise"])
def test_a_constant_judge_fails_and_the_command_says_so(mode, tmp_path, qfile, capsys):
    """Always the same rating (or always A): no pair ranked right; plain words; --strict exits 1;
    the full run carries the check in summary.json and the index row's extra."""
    from tuneloop import index

    log: list = []
    with serve_app(scripted_judge("constant", log)) as url:
        judge = f"openai:{url}/v1#judge"
        base = ["eval", "judge", "--questions", str(qfile), "--judge", judge, "--mode", mode]
        assert main([*base, "--check-judge", "--out", str(tmp_path / "c")]) == 0
        out = capsys.readouterr().out
        assert main([*base, "--check-judge", "--strict", "--out", str(tmp_path / "s")]) == 1
        err = capsys.readouterr().err
        models = ["--answers", str(_answers_file(tmp_path))]
        assert main([*base, *models, "--out", str(tmp_path / "full")]) == 0
        full = capsys.readouterr().out
    said = " ".join(out.split())
    assert "not discriminating" in said and "not to be trusted" in said and "0 of 16" in said
    assert "--strict" in err and "not discriminating" in " ".join(err.split())
    assert "Traceback" not in err
    check = json.loads((tmp_path / "c" / "judge_check.json").read_text())
    assert check["share"] == 0.0 and check["trusted"] is False
    assert check["verdict"] == "not_discriminating" and check["ci95"][1] < 0.5
    assert len((tmp_path / "c" / "judge_check.jsonl").read_text().splitlines()) == \
        (20 if mode == "single" else 32)
    assert "not discriminating" in " ".join(full.split())
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["judge_check"]["trusted"] is False
    rows = [e for e in index.list_evals() if e["kind"] == "judge"]
    assert rows and all(r["extra"]["judge_check"]["share"] == 0.0 for r in rows)
    assert all(r["extra"]["judge_check"]["ci95"] == check["ci95"] for r in rows)


def _answers_file(tmp_path):
    path = tmp_path / "answers.jsonl"
    rows = []
    for model in ("alpha", "beta"):
        for q in QUESTIONS:
            n = len(q.get("turns", [1]))
            rows.append({"question_id": q["id"], "model_id": model,
                         "choices": [{"index": 0, "turns": [f"{model} says hi"] * n}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_no_check_judge_skips_and_the_report_shows_the_check(tmp_path, qfile, capsys):
    """--no-check-judge sends no check prompt; the report's index table prints the check line."""
    from tuneloop import index
    from tuneloop.report.build import render_html
    from tuneloop.report.runs import RunData

    log: list = []
    with serve_app(scripted_judge("reference", log)) as url:
        base = ["eval", "judge", "--questions", str(qfile), "--judge",
                f"openai:{url}/v1#judge", "--answers", str(_answers_file(tmp_path))]
        assert main([*base, "--no-check-judge", "--out", str(tmp_path / "a")]) == 0
        assert len(log) == 8  # 2 models x 4 questions, nothing else
        assert not (tmp_path / "a" / "judge_check.json").exists()
        assert main([*base, "--strict", "--out", str(tmp_path / "b")]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "judge check passed" in said and "16 of 16" in said
    row = [e for e in index.list_evals() if e["kind"] == "judge"][-1]
    assert row["extra"]["judge_check"]["trusted"] is True
    page, _ = render_html([RunData(tmp_path, "run", index_evals=[row])], [])
    assert "judge check passed: the judge scored known-good answers above known-bad" in page


def test_check_only_without_references_needs_answers(tmp_path, capsys):
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"id": "q1", "question": "Hi?"}) + "\n")
    code = main(["eval", "judge", "--questions", str(q), "--judge",
                 "openai:http://127.0.0.1:9/v1#j", "--check-judge"])
    err = capsys.readouterr().err
    assert code == 2 and "known-good answer" in err and "Traceback" not in err
