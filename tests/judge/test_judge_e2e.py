"""`tuneloop eval judge` end to end against a deterministic OpenAI-compatible judge on 127.0.0.1.

A real FastAPI server plays three models: "good" and "bad" answer questions, "judge" returns
recorded-style verdicts decided by the prompt it is shown (position-biased on one question,
malformed on another), so the expected scores are known exactly (R17, R18, R19).
"""

from __future__ import annotations

import json
import re

import pytest
from fakeserver import chat_response, serve_app
from fastapi import FastAPI, Request

from tuneloop.cli import main

QUESTIONS = [
    {"id": "q1", "question": "Name a colour."},
    {"id": "q2", "question": "What is the capital of France?"},
    {"id": "q3", "question": "Translate good morning to French."},
    {"id": "q4", "question": "BIASED: which is better?"},
    {"id": "q5", "question": "GARBLE: say anything."},
    {"id": "q6", "turns": ["Pick a number.", "Double it."], "category": "math"},
]
REFERENCES = [{"id": "q6", "reference": ["7", "14"]}]


def judge_app(log: list[dict]) -> FastAPI:
    app = FastAPI()

    def verdict(body: dict) -> str:
        text = "\n".join(m["content"] for m in body["messages"])
        if "GARBLE" in text:
            return "I refuse to follow the format."
        if "Double it." in text and ("Conversation with User" not in text
                                     or "Reference answer to turn 2" not in text):
            return "wrong prompt used"  # the multi-turn + reference prompt must be chosen
        if "Assistant B's" in text:  # pairwise
            if "BIASED" in text:
                return "The first one. [[A]]"
            a = re.search(r"### Assistant A:\n(.*?)\n\n|Assistant A's Answer\]\n(.*?)\n", text,
                          re.DOTALL)
            first = a.group(1) or a.group(2)
            return "A wins. [[A]]" if first.startswith("GOOD") else "B wins. [[B]]"
        return "Rating: [[9]]" if "GOOD" in text else "Rating: [[3]]"

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        log.append(body)
        last = body["messages"][-1]["content"]
        if body["model"] == "good":
            return chat_response(f"GOOD answer with several words about {last}", "good")
        if body["model"] == "bad":
            return chat_response("meh", "bad")
        return chat_response(verdict(body), "judge")

    return app


@pytest.fixture
def files(tmp_path):
    q = tmp_path / "questions.jsonl"
    q.write_text("".join(json.dumps(r) + "\n" for r in QUESTIONS))
    r = tmp_path / "refs.jsonl"
    r.write_text("".join(json.dumps(x) + "\n" for x in REFERENCES))
    return q, r


def _run(url, files, out, mode):
    q, r = files
    return main(["eval", "judge", "--questions", str(q), "--reference", str(r),
                 "--model", f"openai:{url}/v1#good", "--model", f"openai:{url}/v1#bad",
                 "--judge", f"openai:{url}/v1#judge", "--mode", mode, "--out", str(out),
                 "--no-check-judge"])  # the check has its own tests (test_judge_check.py)


def test_pairwise_end_to_end_both_orders(tmp_path, files, capsys):
    """R17/R18/R19: consistent wins, a position flip → tie, a malformed verdict → excluded."""
    log: list[dict] = []
    with serve_app(judge_app(log)) as url:
        assert _run(url, files, tmp_path / "out", "pairwise") == 0
        n_requests = len(log)
        # A re-run is answered from the sqlite cache: the server sees nothing new.
        assert _run(url, files, tmp_path / "out2", "pairwise") == 0
        assert len(log) == n_requests
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    [r] = summary["results"]
    assert (r["model_a"], r["model_b"]) == ("good", "bad")
    assert (r["wins"], r["losses"], r["ties"], r["n"], r["excluded"]) == (4, 0, 1, 5, 1)
    assert r["win_rate"] == pytest.approx(4.5 / 5)
    assert r["flip_rate"] == pytest.approx(1 / 5)
    assert r["ci95"][0] <= 0.9 <= r["ci95"][1]
    assert r["mean_answer_words_a"] > r["mean_answer_words_b"] > 0
    assert r["by_category"] == {"math": 1.0}
    assert summary["unparseable_outputs"] == 2 and summary["judge_outputs"] == 12
    judgments = [json.loads(line) for line in
                 (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert len(judgments) == 12
    assert {j["order"] for j in judgments} == {"AB", "BA"}
    assert all(j["raw"] for j in judgments)  # every raw judge output is kept
    assert {j["prompt"] for j in judgments if j["question_id"] == "q6"} == {"pair_multi_ref"}
    out = capsys.readouterr().out
    assert "90.0%" in out and "2 of 12 judge outputs were unparseable" in out
    answers = (tmp_path / "out" / "answers.jsonl").read_text()
    assert "Double it." in answers  # the second turn was answered with history


def test_single_end_to_end(tmp_path, files):
    log: list[dict] = []
    with serve_app(judge_app(log)) as url:
        assert _run(url, files, tmp_path / "out", "single") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    by = {r["model"]: r for r in summary["results"]}
    assert by["good"]["mean"] == 9.0 and by["good"]["n"] == 5
    assert by["good"]["unparseable"] == 1  # GARBLE: excluded, not a 0 (R18)
    assert by["bad"]["mean"] == 3.0
    assert by["bad"]["by_category"] == {"math": 3.0}
    assert by["good"]["mean_answer_words"] > by["bad"]["mean_answer_words"]
    # Each model's answer to a 2-turn question took two requests; the judge saw 12 prompts.
    judge_calls = [b for b in log if b["model"] == "judge"]
    assert len(judge_calls) == 12
    assert all(b["temperature"] == 0.0 for b in judge_calls)


def test_bad_questions_file_is_a_clean_error(tmp_path, capsys):
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": "a"}\n')
    code = main(["eval", "judge", "--questions", str(q), "--model", "m", "--judge", "j"])
    assert code != 0
    err = capsys.readouterr().err
    assert "q.jsonl:1" in err and "neither 'turns' nor 'question'" in err
    assert "Traceback" not in err
