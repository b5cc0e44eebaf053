"""The report reads what the trainer and the suite runner really write (their own writers, no model).

If tuneloop.rundir or tuneloop.eval.suite_run change their on-disk format, this fails here
instead of the report silently showing empty sections.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import yaml

from tuneloop.report import write_report
from tuneloop.report.evals import load_eval_dir
from tuneloop.report.runs import load_run


def test_trainer_metrics_and_run_json_are_read(tmp_path):
    """Rows logged through rundir.Metrics (NaN included, R8) land in the right series."""
    from tuneloop import rundir

    run = tmp_path / "run"
    run.mkdir()
    metrics = rundir.Metrics(run, SimpleNamespace(trackers=[]), enabled=True)
    metrics.log("train", 1, loss=2.5, lr=1e-3, grad_norm=0.7, tokens_per_s=100.0)
    metrics.log("train", 2, loss=float("nan"), lr=1e-3, grad_norm=0.7, tokens_per_s=100.0)
    metrics.log("eval", 2, eval_loss=2.25, perplexity=9.49)
    metrics.log("suite", 2, suite="suites/smoke.yaml", pass_rate=0.5)
    metrics.log("checkpoint", 2, path="step-000002", metric=2.25)
    rundir.write_atomic(run / rundir.CONFIG_FILE, yaml.safe_dump({"name": "r", "method": "lora"}))
    rundir.write_json(run / rundir.RUN_FILE, {"name": "r", "status": "completed", "steps": 2,
                                              "best_eval_loss": 2.25, "data_fingerprint": "ab" * 32})
    data = load_run(run)
    assert [r["step"] for r in data.train] == [1, 2]
    assert [r["eval_loss"] for r in data.eval] == [2.25]
    assert [r["pass_rate"] for r in data.suite] == [0.5]
    assert (data.name, data.steps, data.best_eval_loss) == ("r", 2, 2.25)
    assert any("non-finite loss" in w and "2=nan" in w for w in data.warnings)


def test_suite_runner_results_are_read(tmp_path):
    """cases.jsonl + summary.json from suite_run.write_results become one column per variant."""
    from tuneloop.eval.checks import CheckResult
    from tuneloop.eval.suite_run import CaseResult, SuiteResult, write_results

    def case(cid, output, passed, detail=""):
        return CaseResult(id=cid, output=output, passed=passed,
                          checks=[CheckResult("contains", passed, detail)],
                          prompt=[{"role": "user", "content": f"prompt {cid}"}],
                          finish_reason="stop")

    out = tmp_path / "suite-out"
    for variant, second in (("base", False), ("tuned", True)):
        result = SuiteResult(suite="smoke", threshold=0.5, variant=variant, model_ref="m",
                             cases=[case("a", "yes", True), case("b", "<b>x</b>", second,
                                                                   "" if second else "no 'y'")])
        write_results(result, out / variant)
    es = load_eval_dir(out)
    assert [c.label for c in es.columns] == ["suite-out · base", "suite-out · tuned"]
    base, tuned = es.columns
    assert (base.pass_rate, base.n, tuned.pass_rate) == (0.5, 2, 1.0)
    b = base.cases["b"]
    assert (b.prompt, b.output, b.passed, b.detail) == ("user: prompt b", "<b>x</b>", False,
                                                        "contains: no 'y'")
    summary = write_report([], eval_dirs=[out], out=tmp_path / "r.html")
    assert summary.flipped == 1
    assert "&lt;b&gt;x&lt;/b&gt;" in (tmp_path / "r.html").read_text()
    assert json.loads((out / "tuned" / "summary.json").read_text())["variant"] == "tuned"


def test_compare_result_json_is_read(tmp_path):
    """compare.json from tuneloop.eval.compare.CompareResult.to_json renders every part."""
    from tuneloop.eval.compare import CompareResult, win_loss

    names = ["base", "base+prompt", "tuned"]
    passed = {"base": [False, True], "base+prompt": [False, True], "tuned": [True, True]}
    cases = [
        {"id": cid, "prompt": f"question {cid}", "tags": [], "weight": 1.0,
         "results": {v: {"output": f"{v} says <i>{cid}</i>", "passed": passed[v][k],
                         "needs_judge": False, "n_words": 3, "checks": []} for v in names}}
        for k, cid in enumerate(["q1", "q2"])
    ]
    result = CompareResult(
        suite="smoke",
        variants={v: {"suite": "smoke", "variant": v, "n": 2, "pass_rate": sum(passed[v]) / 2,
                      "heldout_loss": {"base": 2.0, "base+prompt": 1.9, "tuned": 1.2}[v],
                      "dir": v} for v in names},
        cases=cases,
        pairs={"tuned vs base": win_loss(passed["tuned"], passed["base"], ["q1", "q2"])},
        heldout=None,
        contamination={"skipped": "no data.train paths in config.yaml"},
    )
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "compare.json").write_text(json.dumps(result.to_json()))
    summary = write_report([], compare_dirs=[out], out=tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert (summary.columns, summary.cases, summary.flipped) == (3, 2, 1)
    assert "tuned says &lt;i&gt;q1&lt;/i&gt;" in html and "1.2000" in html
    assert "tuned vs base" in html and "not scanned: no data.train paths" in html


def test_a_case_left_for_a_judge_says_so_in_both_formats(tmp_path):
    """A judge check with no judge is shown as ungraded, not as a plain failure, in cases.jsonl
    and in compare.json (the suite counts it as not passed)."""
    from tuneloop.eval.checks import CheckContext, check_judge
    from tuneloop.eval.compare import CompareResult
    from tuneloop.eval.suite_run import CaseResult, SuiteResult, write_results

    ungraded = check_judge("out", "is it polite?", CheckContext())
    suite_out = tmp_path / "suite-out"
    write_results(SuiteResult(suite="s", threshold=1.0, variant="tuned", cases=[
        CaseResult(id="a", output="out", passed=False, checks=[ungraded], needs_judge=True)]),
        suite_out / "tuned")
    [col] = load_eval_dir(suite_out).columns
    assert col.cases["a"].detail == "ungraded: needs a judge; judge: needs a judge"

    cmp_out = tmp_path / "cmp"
    cmp_out.mkdir()
    result = CompareResult(suite="s", variants={"tuned": {"n": 1}}, pairs={}, cases=[
        {"id": "a", "prompt": "p", "results": {"tuned": {
            "output": "out", "passed": False, "needs_judge": True,
            "checks": [ungraded.to_json()]}}}])
    (cmp_out / "compare.json").write_text(json.dumps(result.to_json()))
    [col] = load_eval_dir(cmp_out).columns
    assert col.cases["a"].detail == "ungraded: needs a judge; judge: needs a judge"
