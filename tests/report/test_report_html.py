"""The report HTML: self-contained, escaped, and showing what the issue asks for (no browser)."""

from __future__ import annotations

import json
import re

import pytest
from report_fakes import CASES, EXPECTED_FLIPPED, IMG_PAYLOAD, SCRIPT_PAYLOAD

from tuneloop import index
from tuneloop.errors import UsageError
from tuneloop.report import write_report
from tuneloop.report.evals import CaseResult as C
from tuneloop.report.evals import Column, load_eval_dir
from tuneloop.report.tables import case_rows, config_diff, flatten


@pytest.fixture
def report(fake_workspace, tmp_path):
    out = tmp_path / "out" / "report.html"
    summary = write_report(
        [fake_workspace.run_a, fake_workspace.run_b], out=out,
        compare_dirs=[fake_workspace.compare], index_path=tmp_path / "no-index.sqlite",
    )
    return summary, out.read_text(encoding="utf-8")


def test_summary_counts_and_sections(report):
    """Runs, columns (2 run suites + 3 compare variants), cases and flips are counted right."""
    summary, html = report
    assert (summary.runs, summary.columns, summary.cases) == (2, 5, len(CASES))
    assert summary.flipped == EXPECTED_FLIPPED
    assert summary.warnings == []
    for heading in ("Runs", "Loss curves", "Suite pass rates", "Per-case results", "Config diff",
                    "Data fingerprints", "Contamination"):
        assert f"<h2>{heading}</h2>" in html
    assert f"<strong>{EXPECTED_FLIPPED}</strong> case(s) flipped" in html
    assert html.count('class="flipped"') == EXPECTED_FLIPPED
    assert "1 of 4 evaluation case(s) share a 13-gram with the training data" in html
    assert html.count(">contaminated</span>") == 1  # capital-fr, badged in the case table
    assert "a1b2c3d4e5f6" in html  # fingerprint
    assert "Wins and losses between variants" in html and "json-object, xss-script" in html
    # finish_reason only lives in <variant>/cases.jsonl; merged into compare.json's column
    assert html.count("hit max tokens</span>") == 1
    assert "1.3700" in html and "2.3800" in html  # held-out loss per variant
    assert "answer_cut_by_max_length" in html


def test_self_contained_no_external_urls_no_scripts(report):
    """Every src/href is a data: URI or an in-page anchor; no <script>, no http(s) URL at all."""
    _, html = report
    refs = re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', html, flags=re.IGNORECASE)
    assert refs, "expected images and nav links"
    for ref in refs:
        assert ref.startswith(("data:image/png;base64,", "#")), ref
    assert len([r for r in refs if r.startswith("data:")]) == 3  # loss, per-variant, per-step
    assert not re.search(r"https?://", html)
    assert "<script" not in html.lower()
    assert "<style>" in html and "Content-Security-Policy" in html


def test_model_and_user_text_is_escaped(report):
    """R22: payloads in outputs and prompts appear only as escaped text, never as markup."""
    _, html = report
    assert SCRIPT_PAYLOAD not in html and IMG_PAYLOAD not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;window.__xss=1&#34;&gt;" in html
    assert "<img src=x" not in html


def test_config_diff_lists_only_differing_flattened_keys(fake_workspace):
    """Keys that differ (or exist in one run only) are listed; identical keys are not."""
    from tuneloop.report.runs import load_run

    runs = [load_run(fake_workspace.run_a), load_run(fake_workspace.run_b)]
    keys, rows = config_diff(runs)
    diff = {row[0]: row[1:] for row in rows}
    assert set(diff) == {"method", "train.lr", "lora.r", "lora.alpha", "lora.dropout"}
    assert diff["lora.r"] == ["8", "—"]
    assert "train.epochs" in keys and "train.epochs" not in diff
    assert flatten({"a": {"b": {"c": 1}}, "d": [1, 2], "e": {}}) == {"a.b.c": 1, "d": [1, 2], "e": {}}


def test_flip_detection_ignores_missing_and_unjudged_cells():
    """A flip needs one pass and one fail; a missing cell or an unjudged one is not a flip."""
    a, b = Column("a", source=None), Column("b", source=None)
    a.cases = {"x": C("x", passed=True), "y": C("y", passed=True), "z": C("z", passed=None)}
    b.cases = {"x": C("x", passed=False), "z": C("z", passed=False)}
    rows = {r.case_id: r for r in case_rows([a, b])}
    assert rows["x"].flipped and not rows["y"].flipped and not rows["z"].flipped
    assert rows["y"].cells[1] is None
    assert case_rows([a, b])[0].case_id == "x"  # flips first


def test_index_evaluations_and_scores_are_joined(fake_workspace, tmp_path):
    """Runs recorded in the index show its latest suite score and its evaluation rows."""
    db_path = tmp_path / "index.sqlite"
    index.record_run(fake_workspace.run_a, name="lora-r8", model="smollm2-135m-instruct",
                     method="lora", data_fingerprint="sha256:a1b2c3d4e5f6aaaa", steps=50,
                     best_eval_loss=1.42, status="completed", config={}, index=db_path)
    index.record_eval(model_ref=str(fake_workspace.run_a), kind="suite", name="held-suite",
                      score=0.875, n=8, run_dir=fake_workspace.run_a, variant="tuned",
                      checkpoint="step-000050", index=db_path)
    out = tmp_path / "r.html"
    write_report([fake_workspace.run_a], out=out, index_path=db_path)
    html = out.read_text()
    assert "Evaluations recorded in the index" in html
    assert "held-suite" in html and "87.5%" in html and "step-000050" in html


def test_bad_inputs_are_clear_usage_errors(tmp_path):
    """A missing run dir, a non-run dir or an empty eval dir is a UsageError naming the path."""
    with pytest.raises(UsageError, match="run directory not found") as exc:
        write_report([tmp_path / "nope"], out=tmp_path / "r.html")
    assert str(tmp_path / "nope") in exc.value.message()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a run directory"):
        write_report([tmp_path / "empty"], out=tmp_path / "r.html")
    with pytest.raises(UsageError, match="no compare.json"):
        load_eval_dir(tmp_path / "empty")
    with pytest.raises(UsageError, match="nothing to report"):
        write_report([], out=tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_malformed_metrics_lines_are_counted_not_lost(fake_workspace, tmp_path):
    """Broken metrics lines and NaN losses become warnings naming file and lines (R8, R10)."""
    metrics = fake_workspace.run_a / "metrics.jsonl"
    good = metrics.read_text().splitlines()
    nan_row = json.dumps({"step": 51, "kind": "train", "loss": "nan"})  # how the trainer logs NaN
    metrics.write_text(
        "\n".join([good[0], "{not json", good[1], "[1, 2]", *good[2:], nan_row]) + "\n"
    )
    (fake_workspace.run_a / "run.json").write_text("{broken")
    out = tmp_path / "r.html"
    summary = write_report([fake_workspace.run_a], out=out)
    joined = "\n".join(summary.warnings)
    assert "metrics.jsonl: 2 line(s) not a JSON object, skipped (lines 2, 4)" in joined
    assert "run.json: unreadable JSON" in joined
    assert "1 non-finite loss value(s), not plotted (step 51=nan)" in joined  # R8: never hidden
    html = out.read_text()
    assert 'id="warnings"' in html and "data:image/png;base64," in html
    # best eval loss falls back to the metrics when run.json is unreadable
    evals = [json.loads(x)["eval_loss"] for x in good if '"eval"' in x]
    assert f"{min(evals):.4f}" in html


def test_blank_and_cut_off_outputs_are_labelled(tmp_path):
    """A whitespace-only output and one cut at max tokens say so instead of an empty cell (R14)."""
    evals = tmp_path / "suite-out" / "tuned"
    evals.mkdir(parents=True)
    rows = [{"id": "nl", "output": "\n\n\n", "passed": False, "finish_reason": "length",
             "prompt": [{"role": "user", "content": "hi"}]},
            {"id": "ok", "output": "hello", "passed": True, "finish_reason": "stop"}]
    (evals / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "r.html"
    summary = write_report([], eval_dirs=[tmp_path / "suite-out"], out=out)
    html = out.read_text()
    assert (summary.runs, summary.columns, summary.cases) == (0, 1, 2)
    assert "(empty output: 3 whitespace character(s))" in html
    assert html.count("hit max tokens</span>") == 1
    assert "50.0%" in html  # pass rate computed from the cases when there is no summary.json


def test_compare_json_variant_list_and_per_variant_dicts_are_read(tmp_path):
    """Older/hand-made compare.json shapes (variant list, outputs/pass dicts) still render."""
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "compare.json").write_text(json.dumps({
        "variants": [{"name": "a", "pass_rate": 0.0}, "b"],
        "cases": [{"id": "c1", "prompt": "p", "outputs": {"a": "x", "b": "y"},
                   "pass": {"a": False, "b": True}}],
        "heldout_loss": {"a": 1.5},
        "contamination": [{"test_id": "c1"}],
    }))
    (tmp_path / "cmp2").mkdir()
    (tmp_path / "cmp2" / "compare.json").write_text(json.dumps({  # demo: items by position only
        "variants": {"a": {}}, "cases": [{"id": "c0", "results": {"a": {"passed": True}}},
                                         {"id": "c1", "results": {"a": {"passed": True}}}],
        "contamination": {"n": 13, "n_items": 2, "n_contaminated": 1,
                          "items": [{"index": 1, "where": None, "n_matched": 2}]},
    }))
    html = write_report([], compare_dirs=[tmp_path / "cmp2"], out=tmp_path / "r2.html")
    text = (tmp_path / "r2.html").read_text()
    assert html.cases == 2 and text.count(">contaminated</span>") == 1
    assert "<code>c1</code><span class=\"badge warn\"" in text
    es = load_eval_dir(out)
    a, b = es.columns
    assert (a.label, a.pass_rate, a.heldout_loss, b.pass_rate) == ("cmp · a", 0.0, 1.5, 1.0)
    assert (a.cases["c1"].output, b.cases["c1"].passed) == ("x", True)
    summary = write_report([], compare_dirs=[out], out=tmp_path / "r.html")
    assert summary.flipped == 1
    assert "overlapping items" in (tmp_path / "r.html").read_text()


def test_eval_dir_inside_a_run_is_read_once(fake_workspace, tmp_path):
    """Passing RUN/evals/X again as --evals does not duplicate its columns."""
    inner = next((fake_workspace.run_a / "evals").iterdir())
    summary = write_report([fake_workspace.run_a], eval_dirs=[inner], out=tmp_path / "r.html")
    assert summary.columns == 1


def test_compare_json_alone_carries_every_case(fake_workspace):
    """compare.json's per-case `results` are read even without the per-variant suite dirs."""
    import shutil

    for sub in [p for p in fake_workspace.compare.iterdir() if p.is_dir()]:
        shutil.rmtree(sub)
    es = load_eval_dir(fake_workspace.compare)
    assert [c.label.split(" · ")[1] for c in es.columns] == ["base", "base+prompt", "tuned"]
    tuned = es.columns[2]
    assert len(tuned.cases) == len(CASES)
    assert tuned.cases["xss-script"].output == SCRIPT_PAYLOAD
    assert tuned.cases["xss-script"].passed is True
    assert tuned.cases["json-object"].prompt == "Reply with a JSON object with key ok."
    assert (tuned.pass_rate, tuned.heldout_loss) == (0.75, 1.37)
