"""Synthetic data loses nothing: every dropped item is a line of rejects.jsonl with its reason,
too-similar rejects name a task that exists, over-target tasks cost no request, empty inputs are
reported instead of sent, judge verdicts come from probabilities where the backend gives them,
and an unreachable generator leaves --out as it was (or resumable, with stats)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fake_llm import FakeLLM, spec
from fakeserver import chat_response, free_port, serve_app
from fastapi import FastAPI, Request

from tuneloop.backends import Scored, TokenChoice
from tuneloop.cli import main
from tuneloop.errors import ModelError
from tuneloop.synth.docs import DocsOptions, chunk_text, generate_from_chunks, run_docs
from tuneloop.synth.self_instruct import SelfInstructOptions, run_self_instruct

SEEDS = [
    {"instruction": "Give three tips for staying healthy.", "input": "",
     "output": "Eat well, sleep, move."},
    {"instruction": "Translate the sentence into German.", "input": "Good morning",
     "output": "Guten Morgen"},
    {"instruction": "Suggest a name for a bakery.", "input": "", "output": "Crumb & Co."},
]
TWIN_A = "Write a limerick about a lazy cat on a sunday."  # its instances are all empty
TWIN_B = "Write a limerick about a lazy cat on a sunday morning."  # too similar to A, then fine
ROUND1 = (f" {TWIN_A}\n"
          f"5. {TWIN_B}\n"
          "6. Translate the sentence into German please.\n"  # too similar to a seed
          "7. List three benefits of regular exercise for adults.\n"
          "8. Explain why the ocean looks blue to people standing on")  # cut off
ROUND2 = (" Name a primary colour that appears in the rainbow.\n"
          "5. Describe the smell of fresh bread in a busy kitchen.\n"
          "6. Suggest a weekend plan for a rainy day at home.\n")
OVER = ("Describe the smell of fresh bread in a busy kitchen.",
        "Suggest a weekend plan for a rainy day at home.")


def scripted(kind: str, text: str, n: int) -> str:
    if kind == "instructions":
        return [ROUND1, ROUND2][min(n, 1)]
    if kind == "classify":
        return "No"
    if "sunday morning" in text:
        return "Example 1\nInput: <noinput>\nOutput: A cat slept in till noon."
    if "sunday" in text:
        return "Example 1\nInput: <noinput>\nOutput: "
    if "exercise" in text:  # the second instance repeats the first: dropped, kept in rejects
        return ("Example 1\nInput: <noinput>\nOutput: Better sleep.\n\n"
                "Example 2\nInput: <noinput>\nOutput: Better sleep.")
    return "Example 1\nInput: <noinput>\nOutput: Red."


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def seeds(tmp_path) -> Path:
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    return path


def test_every_reject_is_a_line_and_nearest_tasks_exist(seeds, tmp_path):
    fake = FakeLLM(scripted)
    out = tmp_path / "run"
    opts = SelfInstructOptions(target=3, instances=2, batch=1, max_tokens=20, progress=False)
    with fake.serve() as url:
        stats = run_self_instruct(seeds, spec(url), out, opts)
    rejects = _rows(out / "rejects.jsonl")
    assert stats["stopped"] == "target" and stats["accepted"] == 3
    # counted = written: every reject and every dropped instance is one line
    assert len(rejects) == stats["rejects_rows"] == stats["rejected_total"] + sum(
        stats["dropped_instances"].values())
    assert stats["rejected"] == {"over_target": 2, "cut_off_last_item": 1, "too_similar": 1,
                                 "no_valid_instance": 1}
    assert stats["dropped_instances"] == {"empty_output": 1, "repeated_instance": 1}
    by_reason = {}
    for r in rejects:
        by_reason.setdefault(r["reason"], []).append(r)
    assert [r["text"] for r in by_reason["over_target"]] == list(OVER)
    assert by_reason["cut_off_last_item"][0]["text"].startswith("Explain why the ocean")
    assert by_reason["repeated_instance"][0]["output"] == "Better sleep."
    # No classify or instances request for a task already over target.
    sent = [t for k, t in fake.log if k != "instructions"]
    assert len(sent) == 2 * 4 and not any(o in t for t in sent for o in OVER)

    rows = _rows(out / "train.jsonl")
    tasks = {r["meta"]["task"] for r in rows if r["meta"]["source"] == "machine"}
    assert TWIN_B in tasks  # decided again once its near twin had failed its instances
    known = tasks | {s["instruction"] for s in SEEDS}
    for r in by_reason["too_similar"]:
        assert r["nearest"]["task"] in known and r["nearest"]["rouge_l"] > 0.7
    for r in rows:
        if r["meta"]["source"] == "machine":
            assert r["meta"]["nearest"]["task"] in known
    assert all(r["meta"]["nearest"]["task"] != TWIN_A for r in rows if "nearest" in r["meta"])


def test_extending_a_finished_run_redecides_over_target(seeds, tmp_path):
    """over_target rows are the file's tail: a rerun with a larger --target expands them
    instead, with no 'diverged' error, and sends only the new requests."""
    fake = FakeLLM(scripted)
    out = tmp_path / "run"
    with fake.serve() as url:
        run_self_instruct(seeds, spec(url), out, SelfInstructOptions(
            target=3, instances=2, batch=1, max_tokens=20, progress=False))
        sent = fake.total
        more = run_self_instruct(seeds, spec(url), out, SelfInstructOptions(
            target=5, instances=2, batch=1, max_tokens=20, progress=False))
        assert fake.total == sent + 4  # classify + instances for the two former over-target
    assert more["accepted"] == 5 and "over_target" not in more["rejected"]
    rejects = _rows(out / "rejects.jsonl")
    assert len(rejects) == more["rejects_rows"]
    assert not [r for r in rejects if r["reason"] == "over_target"]


def test_unreachable_generator_leaves_out_as_it_was(seeds, tmp_path, capsys):
    dead = {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "x",
            "max_retries": 0}
    out = tmp_path / "new"
    with pytest.raises(ModelError, match="nothing was written"):
        run_self_instruct(seeds, dead, out, SelfInstructOptions(target=2, progress=False))
    assert not out.exists()  # no seeds-only train.jsonl, no manifest, no cache
    kept = tmp_path / "existing"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(ModelError):
        run_docs([_doc(tmp_path)], dead, kept, options=DocsOptions(chunk_words=60, overlap=5,
                                                                    progress=False))
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]


def test_a_generator_failing_mid_run_leaves_a_resumable_run_with_stats(seeds, tmp_path):
    """The first answers arrive, then the server fails: what was done stays, stats.json says
    why it stopped, and the rerun (server back) completes from the cache."""
    state = {"fail": True}

    def flaky(kind, text, n):
        if kind == "classify" and state["fail"]:
            raise RuntimeError("server down")  # a 500: no retries with max_retries 0
        return scripted(kind, text, n)

    fake = FakeLLM(flaky)
    out = tmp_path / "run"
    opts = SelfInstructOptions(target=3, instances=2, batch=1, max_tokens=20, progress=False)
    with fake.serve() as url:
        gen = {"type": "openai", "base_url": f"{url}/v1", "model": "fake", "max_retries": 0}
        with pytest.raises(ModelError, match="rerun the same command to resume"):
            run_self_instruct(seeds, gen, out, opts)
        stats = json.loads((out / "stats.json").read_text())
        assert stats["stopped"] == "error" and "500" in stats["error"]
        assert stats["requests"]["total"] == 1
        state["fail"] = False
        done = run_self_instruct(seeds, gen, out, opts)
    assert done["stopped"] == "target" and done["accepted"] == 3


DOC = """# Harbour handbook

## Boats

The ferry Gullwing leaves pier 4 at 07:10 every weekday, and staff sign the rule book.

## Radios

Channel 16 is reserved for distress calls only, and staff sign the rule book too.

## Appendix

## Index
"""  # at --chunk-words 20 the last chunk is "## Appendix ## Index": headings only


def _doc(tmp_path: Path) -> Path:
    path = tmp_path / "handbook.md"
    path.write_text(DOC)
    return path


def qa(kind: str, text: str, n: int) -> str:
    if kind == "qa":
        return ("Question: When does the ferry Gullwing leave pier 4?\nAnswer: At 07:10.\n\n"
                "Question: Which pier does the ferry Gullwing use?\nAnswer: Pier 4.")
    return "Supported. [[YES]]"


def test_docs_reports_empty_documents_and_heading_only_chunks(tmp_path, capsys):
    """Not sent, warned about, listed in stats; pairs over --questions are rejects rows; the
    docs command has no --threshold (it only applies to a library caller's avoid list)."""
    doc = _doc(tmp_path)
    empty = tmp_path / "empty.md"
    empty.write_text("\n\n  \n")
    fake = FakeLLM(qa)
    out = tmp_path / "out"
    with fake.serve() as url:
        rc = main(["synth", "docs", str(doc), str(empty), "--generator", spec(url), "--out",
                   str(out), "--chunk-words", "20", "--overlap", "2", "--questions", "1",
                   "--no-progress"])
        assert rc == 0
        assert main(["synth", "docs", str(doc), "--generator", spec(url), "--out",
                     str(tmp_path / "t"), "--threshold", "0.5"]) == 2
    captured = capsys.readouterr()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["skipped"] == {"empty_document": 1, "heading_only_chunk": 1}
    heading_only = [s for s in stats["skipped_inputs"] if s["reason"] == "heading_only_chunk"]
    assert heading_only[0]["heading"] == "Appendix" and heading_only[0]["chunk"] == 2
    assert fake.kinds["qa"] == stats["chunks"] == 2  # the heading-only chunk was not sent
    assert not any("## Appendix\n\n## Index" in t for _, t in fake.log)
    assert "empty.md: holds no text; not sent" in captured.err
    assert "chunk 2 holds only headings (Appendix)" in captured.err
    assert "No such option '--threshold'" in captured.err
    rejects = _rows(out / "rejects.jsonl")
    assert len(rejects) == stats["rejects_rows"] == stats["rejected_total"]
    assert stats["rejected"] == {"over_question_limit": 2, "repeated_question": 1}
    assert rejects[0]["question"] == "Which pier does the ferry Gullwing use?"
    only_headings = tmp_path / "toc.md"
    only_headings.write_text("# One\n\n## Two\n")
    assert main(["synth", "docs", str(only_headings), "--generator", spec(url), "--out",
                 str(tmp_path / "o2")]) == 1
    assert "hold no text" in capsys.readouterr().err


def judge_with_logprobs(log: list) -> FastAPI:
    """Q/A generator and a judge whose verdict token comes with top_logprobs (YES 0.8)."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        log.append(body)
        text = body["messages"][-1]["content"]
        if "Write up to" in text:
            return chat_response("Question: When does the ferry Gullwing leave pier 4?\n"
                                 "Answer: At 07:10.")
        pieces = ["Supported by the text. ", "[[", "YES", "]]"]
        resp = chat_response("".join(pieces))
        if body.get("logprobs"):
            alts = [("YES", math.log(0.8)), ("NO", math.log(0.2))]
            resp["choices"][0]["logprobs"] = {"content": [
                {"token": p, "logprob": 0.0, "bytes": None,
                 "top_logprobs": [{"token": t, "logprob": v, "bytes": None}
                                  for t, v in (alts if i == 2 else [(p, 0.0)])]}
                for i, p in enumerate(pieces)], "refusal": None}
        return resp

    return app


def test_docs_judge_verdicts_come_from_probabilities(tmp_path):
    log: list = []
    chunks = chunk_text(DOC, "handbook.md", chunk_words=20, overlap=2)[:1]
    with serve_app(judge_with_logprobs(log)) as url:
        stats = generate_from_chunks(chunks, f"openai:{url}/v1#g", tmp_path / "o",
                                     judge=f"openai:{url}/v1#j",
                                     options=DocsOptions(questions=1, progress=False))
    assert stats["accepted"] == 1
    assert stats["judge_verdicts_by_method"] == {"probability": 2, "parsed": 0, "unparseable": 0}
    [row] = _rows(tmp_path / "o" / "train.jsonl")
    assert row["meta"]["judge_verdicts"]["faithful"] == {"method": "probability", "p_yes": 0.8}
    judge_calls = [b for b in log if b["model"] == "j"]
    assert all(b.get("logprobs") is True and b.get("top_logprobs") == 20 for b in judge_calls)


class _LocalStyleJudge:
    """A judge that continues prefixes (as a local model does) and explains without writing a
    verdict; continued after 'Verdict: [[' its next token says NO with P 0.9."""

    name = "local:scripted-judge"
    continues_prefix = True

    def __init__(self):
        self.calls: list = []

    def generate(self, prompts, params):
        return [s.text for s in self.generate_scored(prompts, params, 20)]

    def generate_scored(self, prompts, params, top_logprobs):
        out = []
        for p in prompts:
            self.calls.append(p)
            if p[-1]["role"] == "assistant":  # the verdict prefix to continue
                out.append(Scored("NO]]", (TokenChoice("NO", math.log(0.9), (
                    ("NO", math.log(0.9)), ("YES", math.log(0.1)))), TokenChoice("]]", 0.0, ()))))
            else:
                out.append(Scored("It seems fine", (TokenChoice("It seems fine", 0.0, ()),)))
        return out


def test_a_local_judge_without_a_written_verdict_is_read_after_its_explanation(tmp_path):
    judge = _LocalStyleJudge()
    chunks = chunk_text(DOC, "handbook.md", chunk_words=20, overlap=2)[:1]
    fake = FakeLLM(qa)
    with fake.serve() as url:
        stats = generate_from_chunks(chunks, spec(url), tmp_path / "o", judge=judge,
                                     options=DocsOptions(questions=1, progress=False))
    assert stats["rejected"] == {"over_question_limit": 1, "unfaithful": 1}
    assert stats["judge_verdicts_by_method"]["probability"] == 2
    assert stats["requests"]["by_kind"]["judge_verdict"] == 2
    [reject] = [r for r in _rows(tmp_path / "o" / "rejects.jsonl") if r["stage"] == "judge"]
    assert reject["judge_verdicts"]["faithful"]["p_yes"] == pytest.approx(0.1)
    assert judge.calls[-1][-1]["content"] == "It seems fine\n\nVerdict: [["
