"""MT-Bench files as shipped (FastChat question / model-answer / reference-answer JSONL) and the
self-preference warning from training-data provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakeserver import serve_app
from test_judge_probs import _Fixed, _scripted_judge

from tuneloop.cli import main
from tuneloop.errors import EvalError
from tuneloop.eval.judge import (
    Question,
    answers_for,
    load_answers,
    load_questions,
    load_references,
    run_judge,
    summary_warnings,
)

DATA = Path(__file__).parent / "data" / "mtbench"


def test_fastchat_rows_load_unchanged():
    """question.jsonl, model answers and reference answers in FastChat's format, as shipped."""
    qs = load_questions(DATA / "question.jsonl")
    assert len(qs) == 10 and qs[0].id == "101" and qs[0].category == "writing"
    assert [len(q.turns) for q in qs].count(2) == 2
    answers = load_answers(DATA / "strong-model.jsonl")
    assert list(answers) == ["strong-model"] and len(answers["strong-model"]) == 10
    assert answers["strong-model"]["104"] == ["15% of 80 is 0.15 x 80 = 12."]
    refs = load_references(DATA / "reference.jsonl")
    assert refs["109"] == ["$8", "15 pens"]
    ordered = answers_for(qs, answers["strong-model"], "strong-model")
    assert [len(a) for a in ordered] == [len(q.turns) for q in qs]


def test_tuneloop_rows_and_errors(tmp_path):
    """tuneloop's own answers.jsonl rows load too; a missing answer names model and question."""
    own = tmp_path / "answers.jsonl"
    own.write_text(json.dumps({"question_id": "q1", "model": "m", "answers": ["hi"]}) + "\n")
    assert load_answers(own) == {"m": {"q1": ["hi"]}}
    with pytest.raises(EvalError, match="no answer to question 'q2'"):
        answers_for([Question("q1", ["a"]), Question("q2", ["b"])], {"q1": ["x"]}, "m")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question_id": 1, "model_id": "m", "choices": []}) + "\n")
    with pytest.raises(EvalError) as info:
        load_answers(bad)
    assert info.value.where == f"{bad}:1" and "choices" in info.value.message()


def test_cli_judges_fastchat_answers_without_generating(tmp_path, capsys):
    """--answers (FastChat model answers) + --reference (FastChat references): no generation
    request is made, categories carry into per-category results."""
    log: list = []
    with serve_app(_scripted_judge(True, log)) as url:
        code = main(["eval", "judge", "--questions", str(DATA / "question.jsonl"),
                     "--answers", str(DATA / "strong-model.jsonl"),
                     "--answers", str(DATA / "weak-model.jsonl"),
                     "--reference", str(DATA / "reference.jsonl"),
                     "--judge", f"openai:{url}/v1#judge", "--out", str(tmp_path / "out"),
                     "--no-check-judge"])
    assert code == 0
    assert len(log) == 20 and all(b["model"] == "judge" for b in log)  # judging only
    assert any("[The Start of Reference Answer]\n12" in b["messages"][-1]["content"]
               for b in log)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    by = {r["model"]: r for r in summary["results"]}
    assert set(by) == {"strong-model", "weak-model"}
    assert set(by["strong-model"]["by_category"]) == {
        "writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"}
    assert summary["verdicts_by_method"]["probability"] == 20
    assert "20 verdicts from the judge's token probabilities" in capsys.readouterr().out


def _run_dir(tmp_path: Path, generators: list[str | None]) -> Path:
    """A run directory whose data/fingerprint.json lists one chat file with those provenances."""
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "model").mkdir()
    data = tmp_path / "train.jsonl"
    rows = []
    for i, gen in enumerate(generators):
        meta = ({"source": "human"} if gen is None else
                {"source": "machine", "generator": gen, "request_id": f"r{i}"})
        rows.append({"messages": [{"role": "user", "content": f"q{i}"},
                                  {"role": "assistant", "content": f"a{i}"}], "meta": meta})
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (run / "data" / "fingerprint.json").write_text(json.dumps({
        "id": "x", "files": [{"path": str(data), "sha256": None, "rows": len(rows)}]}))
    return run


def test_self_preference_warning_names_the_share(tmp_path):
    """Judge = the generator of 3 of 8 training rows → a warning with 38%; another judge → none."""
    run = _run_dir(tmp_path, ["smollm2-135m-instruct"] * 3 + [None] * 3
                   + ["openai:http://h/v1#big"] * 2)
    qs = [Question("q1", ["Say hi."])]
    answers = {str(run): [["hello"]], "base": [["hi"]]}
    same = run_judge(qs, [str(run), "base"], _Fixed("local:smollm2-135m-instruct", "[[7]]"),
                     mode="single", show_progress=False, answers=answers)
    [w] = same.summary["self_preference"]
    assert (w["rows"], w["of"], w["model"]) == (3, 8, "run")
    assert w["share"] == pytest.approx(3 / 8)
    [text] = summary_warnings(same.summary)
    assert "38% (3 of 8)" in text and "another model" in text
    other = run_judge(qs, [str(run), "base"], _Fixed("local:other-judge", "[[7]]"),
                      mode="single", show_progress=False, answers=answers)
    assert other.summary["self_preference"] == [] and summary_warnings(other.summary) == []
    remote = run_judge(qs, [str(run), "base"], _Fixed("openai:http://h/v1/#big", "[[7]]"),
                       mode="single", show_progress=False, answers=answers)
    [w] = remote.summary["self_preference"]
    assert (w["rows"], w["of"]) == (2, 8)  # same server + model, trailing slash aside


def test_self_preference_warning_reaches_cli_and_report(tmp_path, capsys):
    """The CLI prints the warning and the HTML report's index table shows it for the run."""
    from tuneloop.report.build import write_report

    run = _run_dir(tmp_path, ["openai:http://judge.example/v1#judge"] * 2 + [None] * 2)
    (run / "metrics.jsonl").write_text("")
    qs = tmp_path / "q.jsonl"
    qs.write_text(json.dumps({"question_id": 1, "category": "misc", "turns": ["Say hi."]}) + "\n")
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"question_id": 1, "model_id": str(run), "choices": [
        {"index": 0, "turns": ["GOOD hello"]}]}) + "\n")
    with serve_app(_scripted_judge(False, [])) as url:
        judge = f"openai:{url}/v1#judge"
        # the run's rows name another server: no warning
        assert main(["eval", "judge", "--questions", str(qs), "--answers", str(answers),
                     "--judge", judge, "--out", str(tmp_path / "o1")]) == 0
        assert "self-preference" not in capsys.readouterr().out
        fp = run / "data" / "fingerprint.json"
        data = Path(json.loads(fp.read_text())["files"][0]["path"])
        data.write_text(data.read_text().replace("http://judge.example/v1", f"{url}/v1"))
        assert main(["eval", "judge", "--questions", str(qs), "--answers", str(answers),
                     "--judge", judge, "--out", str(tmp_path / "o2")]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "self-preference" in printed and "50% (2 of 4)" in printed
    html = tmp_path / "report.html"
    write_report([run], out=html)
    page = " ".join(html.read_text(encoding="utf-8").split())
    assert "Warning: self-preference" in page and "50% (2 of 4)" in page
