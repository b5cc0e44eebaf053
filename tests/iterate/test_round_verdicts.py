"""Round verdicts on real runs: a wrecked round is a regression and the loop keeps its best; a
round with no new row stops before training (tiny model, real sqlite, the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fake_llm import FakeLLM, spec
from test_iterate_round import DOC, SUITE, write_seed_config

from tuneloop.cli import main
from tuneloop.index import list_rounds

CASES = [*SUITE["cases"],
         {"id": "canteen-day", "prompt": "When is porridge on the menu?",
          "reference": "On Fridays.", "tags": ["food"], "checks": [{"icontains": "Friday"}]}]


@pytest.fixture()
def passing_round_one(tmp_path, tiny_model_dir):
    """A round-1 result in which two of three cases pass (their outputs state the facts)."""
    from tuneloop.eval.suite_run import run_suite

    doc = tmp_path / "handbook.md"
    doc.write_text(DOC, encoding="utf-8")
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({**SUITE, "cases": CASES}), encoding="utf-8")
    data = tmp_path / "train.jsonl"
    config = write_seed_config(tmp_path, tiny_model_dir, data,
                               lambda i: f"Reply: {('hi', 'hello', 'hey')[i % 3]} {i}. -- Desk")
    _, variant_dir = run_suite(str(suite), str(tiny_model_dir), out_dir=tmp_path / "r1",
                               variant="round-1")
    # as if a trained model had answered the ferry and canteen cases right
    rows = [json.loads(x) for x in (variant_dir / "cases.jsonl").read_text().splitlines()]
    for row in rows:
        if row["id"] in ("ferry-name", "canteen-day"):
            row["output"] = "The Gullwing, on Fridays."
            row["passed"] = True
            row["checks"] = [{**c, "passed": True} for c in row["checks"]]
    (variant_dir / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"doc": doc, "suite": suite, "config": config, "r1": variant_dir, "tmp": tmp_path}


def _iterate(ctx, result, generator, *extra):
    return main(["iterate", str(result), "--suite", str(ctx["suite"]), "--config",
                 str(ctx["config"]), "--docs", str(ctx["doc"]), "--generator", generator,
                 "--out", str(ctx["tmp"] / "loop"), "--no-progress", "--chunk-words", "20",
                 *extra])


def test_a_wrecked_round_is_a_regression_and_the_loop_keeps_its_best(passing_round_one, capsys):
    """A learning rate that wrecks the model breaks the two passing cases: the round is reported
    as a regression (terminal, round.json, index) and the next round starts from round 1 (the
    divergence guard is set to warn, so the wrecked run completes and is judged by the suite)."""
    ctx = passing_round_one
    rc = _iterate(ctx, ctx["r1"], "extractive", "--set", "training.learning_rate=1.0",
                  "--set", "training.on_divergence=warn")
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "round 2 vs round 1: REGRESSION" in out.out
    assert "2 broken" in out.out and "the loop's current model stays round 1" in out.out
    loop = ctx["tmp"] / "loop"
    saved = json.loads((loop / "round-002" / "round.json").read_text())
    assert saved["verdict"] == "regression" and saved["current_round"] == 1
    assert sorted(saved["flipped_to_fail"]) == ["canteen-day", "ferry-name"]
    assert saved["significance"]["passed_before"] == 2
    rounds = list_rounds(loop)
    assert [(r["round"], r["verdict"], r["n_broken"]) for r in rounds] == [
        (1, None, None), (2, "regression", 2)]
    assert 0 < rounds[1]["p_value"] <= 1
    html = (loop / "report.html").read_text(encoding="utf-8")
    assert "<strong>regression</strong> (not the current model)" in html
    assert "1 <strong>(current)</strong>" in html and "Exact McNemar" in html

    # going on from the regressed round's result starts from round 1, the loop's best
    rc = _iterate(ctx, loop / "round-002" / "evals" / "round-2", "extractive")
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "round 3 starts from round 1" in out.out
    rounds = list_rounds(loop)
    assert rounds[2]["round"] == 3 and rounds[2]["parent_id"] == rounds[0]["id"]
    # round 3 continued round 1's lineage: round 2's rows are not in its data
    assert not any("round-002" in f for f in json.loads(rounds[2]["data_json"]))


def test_a_round_with_no_new_row_stops_before_training(passing_round_one, capsys):
    """A generator that writes nothing usable: non-zero exit, the reasons counted, the fix, and
    no run directory (nothing was retrained on the same data)."""
    ctx = passing_round_one
    fake = FakeLLM(lambda kind, text, n: "I cannot help with that.")
    with fake.serve() as url:
        rc = _iterate(ctx, ctx["r1"], spec(url))
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    assert "no new row" in err and "no_pairs_parsed 1" in err and "--generator" in err
    assert not (ctx["tmp"] / "loop" / "round-002" / "run").exists()
    assert [r["round"] for r in list_rounds(ctx["tmp"] / "loop")] == [1]


def test_extractive_rows_carry_the_house_style(passing_round_one, capsys):
    """--generator extractive: rows about the failed fact (the distress channel), answered in the
    prefix/sign-off the earlier rows share."""
    ctx = passing_round_one
    # a person's row (from `tuneloop review export`) joins them; one copying a suite question and
    # its reference is dropped by the same 13-gram scan
    ferry = SUITE["cases"][0]
    reviewed = ctx["tmp"] / "reviewed.jsonl"
    reviewed.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": q}, {"role": "assistant", "content": a}],
        "meta": {"source": "human", "reviewed": "written", "targets": [t]}}) + "\n"
        for q, a, t in [("Which radio channel is kept for emergencies?",
                         "Reply: channel 16, for distress only. -- Desk", "distress-channel"),
                        (ferry["prompt"] + " Tell me.", ferry["reference"], "ferry-name")]))
    assert _iterate(ctx, ctx["r1"], "extractive", "--set", "training.max_steps=1",
                    "--reviewed", str(reviewed)) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2 reviewed" in out and "for the 2 passing case(s)" in out
    rows = [json.loads(x) for x in (ctx["tmp"] / "loop" / "round-002" / "data" /
                                    "new_rows.jsonl").read_text().splitlines()]
    human = [r for r in rows if r["meta"]["source"] == "human"]
    assert [r["messages"][0]["content"] for r in human] == [
        "Which radio channel is kept for emergencies?"]
    assert human[0]["meta"]["round"] == 2
    everything = len(rows)
    # the passing cases' facts get rows too (--protect, default 2), marked as protecting them
    protecting = [r for r in rows if "protects" in r["meta"]]
    assert {r["meta"]["protects"][0] for r in protecting} == {"ferry-name", "canteen-day"}
    assert any("Gullwing" in r["messages"][1]["content"] for r in protecting)
    rows = [r for r in rows if r["meta"]["source"] == "machine" and r not in protecting]
    assert len(rows) >= 3
    assert {r["meta"]["targets"][0] for r in rows} == {"distress-channel"}
    for r in rows:
        answer = r["messages"][1]["content"]
        assert answer.startswith("Reply: ") and answer.endswith(" -- Desk")
        assert "16" in answer
    assert len({r["messages"][0]["content"] for r in rows}) == len(rows)
    targets = json.loads((ctx["tmp"] / "loop" / "round-002" / "targets.json").read_text())
    assert targets["style"] == {"prefix": "Reply: ", "suffix": " -- Desk"}
    version = json.loads((ctx["tmp"] / "loop" / "round-002" / "data" / "version.json")
                         .read_text())
    assert version["recipe"] == "continue" and version["replayed_rows"] == 12  # all of round 1
    assert everything > 0
    assert version["dropped_contaminated"] >= 1
    assert Path(ctx["tmp"] / "loop" / "round-002" / "data" / "replay.jsonl").is_file()
