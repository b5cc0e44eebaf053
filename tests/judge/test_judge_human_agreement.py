"""`tuneloop eval judge --human-votes`: the judge's agreement with arena votes, end to end.

The human votes are cast in a real arena database (tuneloop.arena.store) and exported with the
arena's own exporter; a scripted OpenAI-compatible judge on 127.0.0.1 gives verdicts decided per
question, so every figure is known by construction.
"""

from __future__ import annotations

import json
import re

import pytest
from fakeserver import chat_response, serve_app
from fastapi import FastAPI, Request

from tuneloop.arena.export import export_preferences
from tuneloop.arena.store import ArenaStore
from tuneloop.cli import main

ALPHA = "ALPHA says so"  # 3 words
BETA = "BETA says so in more words"  # 6 words: always the longer answer


def _question(qid: str) -> str:
    return f"Question {qid}: which is better?"


def judge_app(plan: dict[str, str]) -> FastAPI:
    """plan[question id]: "alpha" / "beta" (that model wins in both orders), "tie" ([[C]] in
    both), "first" (the first-shown answer wins in both orders), "garble" (no verdict)."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        text = "\n".join(m["content"] for m in body["messages"])
        qid = re.search(r"Question (\w+):", text).group(1)
        first = "alpha" if "Assistant A's Answer]\nALPHA" in text else "beta"
        what = plan[qid]
        if what == "garble":
            return chat_response("I like both.", "judge")
        if what == "tie":
            letter = "C"
        elif what == "first":
            letter = "A"
        else:
            letter = "A" if what == first else "B"
        return chat_response(f"Verdict: [[{letter}]]", "judge")

    return app


def _files(tmp_path, qids: list[str]):
    q = tmp_path / "questions.jsonl"
    q.write_text("".join(json.dumps({"id": i, "question": _question(i)}) + "\n" for i in qids))
    a = tmp_path / "answers.jsonl"
    a.write_text("".join(
        json.dumps({"question_id": i, "model_id": m, "choices": [{"index": 0, "turns": [t]}]})
        + "\n" for i in qids for m, t in (("alpha", ALPHA), ("beta", BETA))))
    return q, a


def _arena(db, prompts: dict[str, str], models=("alpha", "beta", "gamma")) -> ArenaStore:
    store = ArenaStore(db)
    store.add_prompts({pid: [{"role": "user", "content": text}] for pid, text in prompts.items()})
    store.add_models({m: f"spec-{m}" for m in models})
    texts = {"alpha": ALPHA, "beta": BETA, "gamma": "GAMMA"}
    for m in models:
        store.put_answers(m, {pid: texts[m] for pid in prompts}, {"temperature": 0})
    return store


def _vote(store, rater: str, pid: str, shown_a: str, shown_b: str, winner: str) -> None:
    _, session = store.create_session(rater)
    store.cast_vote(session, store.issue_battle(session, pid, shown_a, shown_b), winner)


def _judge(url, q, a, votes, out):
    return main(["eval", "judge", "--questions", str(q), "--answers", str(a), "--mode",
                 "pairwise", "--judge", f"openai:{url}/v1#judge", "--human-votes", str(votes),
                 "--out", str(out)])


def test_agreement_known_by_construction_through_an_arena_export(tmp_path, capsys):
    """20 matched votes, the judge agreeing on exactly 15: 2 opposite winners, 3 judge ties (2
    [[C]] in both orders, 1 position flip). Plus one vote per kind of miss, and one judged pair
    no one voted on. Every figure in summary.json equals the hand computation."""
    qids = [f"q{i:02d}" for i in range(22)]
    # Humans: alpha wins q00-q09, beta q10-q19 (the export carries decisive votes only).
    # Judge: agrees on q00-q07 and q10-q16 (15); opposite on q08 and q17; tie on q09, q18
    # ([[C]]) and q19 (first-shown wins both orders); q20 judged, no vote; q21 unparseable.
    plan = {q: "alpha" for q in qids[:8]} | {q: "beta" for q in qids[10:17]}
    plan |= {"q08": "beta", "q17": "alpha", "q09": "tie", "q18": "tie", "q19": "first",
             "q20": "alpha", "q21": "garble"}
    q, a = _files(tmp_path, qids)
    # The first five arena prompts have their own ids: they match by text.
    pid = {i: (f"arena-{i}" if int(i[1:]) < 5 else i) for i in qids}
    prompts = {pid[i]: _question(i) for i in qids} | {"elsewhere": "A prompt never judged."}
    store = _arena(tmp_path / "arena.sqlite", prompts)
    for n, qid in enumerate(qids[:20] + ["q21"]):
        winner = "alpha" if int(qid[1:]) < 10 else "beta"
        shown = ("alpha", "beta") if n % 2 else ("beta", "alpha")  # both sides, as the arena does
        _vote(store, f"r{n}", pid[qid], *shown, "a" if shown[0] == winner else "b")
    _vote(store, "x", "elsewhere", "alpha", "beta", "a")  # prompt not judged
    _vote(store, "y", "q10", "gamma", "alpha", "a")  # model pair not judged
    store.close()
    export = tmp_path / "prefs.jsonl"
    assert export_preferences(tmp_path / "arena.sqlite", export).pairs == 23

    with serve_app(judge_app(plan)) as url:
        assert _judge(url, q, a, export, tmp_path / "out") == 0
    h = json.loads((tmp_path / "out" / "summary.json").read_text())["human_agreement"]
    assert (h["human_votes"], h["matched_votes"], h["matched_pairs"], h["judge_pairs"]) == \
        (23, 20, 20, 22)
    assert h["judge_pairs_without_human_vote"] == 1  # q20 (q21 has no verdict to match)
    assert h["human_votes_without_judge_verdict"] == {
        "prompt_not_judged": 1, "model_pair_not_judged": 1, "judge_verdict_unparseable": 1}
    assert h["answers_differ"] == 0 and h["few_votes"] is False and h["warnings"] == []
    assert h["agreement_with_ties"] == pytest.approx(15 / 20)
    assert h["n_without_ties"] == 17
    assert h["agreement_without_ties"] == pytest.approx(15 / 17)
    # Judge's model A is alpha: people say A 10, B 10; the judge A 9 (8 + q17), B 8, tie 3.
    p_e = 10 / 20 * 9 / 20 + 10 / 20 * 8 / 20
    assert h["cohen_kappa"] == pytest.approx((15 / 20 - p_e) / (1 - p_e))
    for key in ("agreement_with_ties", "agreement_without_ties", "cohen_kappa"):
        lo, hi = h[f"{key}_ci95"]
        assert lo <= h[key] <= hi and lo < hi
    # 17 consistent pairs name the first-shown answer once each; q19 names it twice; [[C]] never.
    pos = h["position_bias"]
    assert pos["pairs"] == 20
    assert pos["first_shown_win_rate"] == pytest.approx((17 + 2) / (17 * 2 + 2))
    assert pos["first_shown_won_both_orders"] == pytest.approx(1 / 20)
    # beta's answer is always the longer: the judge picked it in 8 of its 17 decided verdicts.
    assert h["length_bias"]["judge"] == {"n": 17, "longer_win_rate": pytest.approx(8 / 17)}
    assert h["length_bias"]["human"] == {"n": 20, "longer_win_rate": pytest.approx(0.5)}
    out = " ".join(capsys.readouterr().out.split())
    assert "20 of 23 human vote(s) matched on 20 of 22 judged pair(s)" in out
    assert "agreement with ties 75.0%" in out and "without ties 88.2%" in out
    assert "1 prompt not judged, 1 model pair not judged, 1 judge verdict unparseable" in out


def test_orientation_swap_and_ties_from_the_arena_database(tmp_path, capsys):
    """A person who saw (beta, alpha) and chose the left answer preferred beta: that matches a
    judge that compared (alpha, beta) and chose B. Ties and both-bad (only in the database) are
    no preference; four votes are few, and the output says the intervals are wide."""
    qids = ["p1", "p2", "p3"]
    q, a = _files(tmp_path, qids)
    db = tmp_path / "arena.sqlite"
    store = _arena(db, {i: _question(i) for i in qids}, models=("alpha", "beta"))
    _vote(store, "ann", "p1", "beta", "alpha", "a")  # beta, shown first
    _vote(store, "ann", "p2", "alpha", "beta", "b")  # beta, shown second
    _vote(store, "ann", "p3", "beta", "alpha", "tie")
    _vote(store, "bob", "p3", "alpha", "beta", "both_bad")
    store.close()
    plan = {"p1": "beta", "p2": "beta", "p3": "tie"}
    with serve_app(judge_app(plan)) as url:
        assert _judge(url, q, a, db, tmp_path / "out") == 0
        printed = " ".join(capsys.readouterr().out.split())
        # Misread sides would turn p1 into a disagreement; the database path keeps them.
        swapped = tmp_path / "swapped.jsonl"
        export_preferences(db, swapped)
        assert _judge(url, q, a, swapped, tmp_path / "out2") == 0
    h = json.loads((tmp_path / "out" / "summary.json").read_text())["human_agreement"]
    assert (h["human_votes"], h["matched_votes"], h["matched_pairs"]) == (4, 4, 3)
    assert h["agreement_with_ties"] == 1.0 and h["agreement_without_ties"] == 1.0
    assert h["n_without_ties"] == 2 and h["few_votes"] is True
    assert "only 4 matched vote(s)" in printed and "intervals are wide" in printed
    h2 = json.loads((tmp_path / "out2" / "summary.json").read_text())["human_agreement"]
    assert (h2["human_votes"], h2["matched_votes"], h2["agreement_with_ties"]) == (2, 2, 1.0)


@pytest.mark.parametrize("line, message", [
    ('{"prompt": [{"role": "user", "content": "x"}], "chosen": "a"', "invalid JSON"),
    (('{"prompt": [{"role": "user", "content": "x"}], "chosen": "a", "rejected": "b", '
     '"rejected_model": "beta"}'), "field 'chosen_model' must be a non-empty string (missing)"),
    (('{"prompt": "x", "chosen": "a", "rejected": "b", "chosen_model": "alpha", '
     '"rejected_model": "beta"}'), "field 'prompt' must be a non-empty list"),
])
def test_malformed_votes_file_is_a_clean_error(tmp_path, capsys, line, message):
    """A bad votes file stops before anything is generated or judged, with file:line and a fix."""
    q, a = _files(tmp_path, ["q1"])
    good = json.dumps({"prompt": [{"role": "user", "content": "x"}], "chosen": "a",
                       "rejected": "b", "chosen_model": "alpha", "rejected_model": "beta"})
    votes = tmp_path / "votes.jsonl"
    votes.write_text(good + "\n" + line + "\n")
    code = main(["eval", "judge", "--questions", str(q), "--answers", str(a), "--mode",
                 "pairwise", "--judge", "openai:http://127.0.0.1:9/v1#judge", "--human-votes",
                 str(votes)])
    err = capsys.readouterr().err
    assert code != 0
    assert f"{votes}:2" in err and message in " ".join(err.split())
    assert "Traceback" not in err


def test_human_votes_need_pairwise_mode(tmp_path, capsys):
    q, a = _files(tmp_path, ["q1"])
    code = main(["eval", "judge", "--questions", str(q), "--answers", str(a), "--judge",
                 "openai:http://127.0.0.1:9/v1#judge", "--human-votes", str(tmp_path / "v")])
    err = capsys.readouterr().err
    assert code != 0 and "--mode pairwise" in err and "Traceback" not in err


def test_report_shows_the_agreement_block(tmp_path):
    """The HTML report's judge section: from a judge output dir (--evals) and from the index rows
    the judge recorded (one row per pair, shown once), with counts and the few-votes flag."""
    from tuneloop import index
    from tuneloop.report.build import render_html, write_report
    from tuneloop.report.runs import RunData

    qids = ["p1", "p2"]
    q, a = _files(tmp_path, qids)
    db = tmp_path / "arena.sqlite"
    store = _arena(db, {i: _question(i) for i in qids}, models=("alpha", "beta"))
    _vote(store, "ann", "p1", "beta", "alpha", "a")  # agrees with the judge
    _vote(store, "ann", "p2", "alpha", "beta", "a")  # the judge says beta
    store.close()
    with serve_app(judge_app({"p1": "beta", "p2": "beta"})) as url:
        assert _judge(url, q, a, db, tmp_path / "out") == 0
    html = tmp_path / "report.html"
    write_report([], out=html, eval_dirs=[tmp_path / "out"])
    page = " ".join(html.read_text(encoding="utf-8").split())
    assert '<section id="judge-agreement">' in page and 'href="#judge-agreement"' in page
    assert "<strong>2</strong> of 2 human vote(s) matched on 2 of 2 judged pair(s)" in page
    assert "<td>Agreement with ties</td><td class=\"n\">50.0%</td>" in page
    assert "Only 2 matched vote(s) (fewer than 10): the 95% intervals are wide." in page
    assert "66% of votes with ties and 85% without" in page
    # The index row the judge recorded carries the same figures: the report shows them once.
    [row] = [e for e in index.list_evals() if e["kind"] == "judge"]
    assert row["extra"]["human_agreement"]["agreement_with_ties"] == 0.5
    run = RunData(tmp_path, "run", index_evals=[row, row])
    page2, _ = render_html([run], [])
    assert page2.count('class="judge-agreement"') == 1 and "50.0%" in page2
    plain, _ = render_html([RunData(tmp_path, "run")], [])
    assert "judge-agreement" not in plain
