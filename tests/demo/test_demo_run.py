"""`tuneloop demo --quick` runs the whole loop end to end on the tiny model dir."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from tuneloop.demo import VARIANTS, _prepare_workdir, run_demo
from tuneloop.errors import UsageError


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """An isolated workspace (index, default run dirs) per test."""
    monkeypatch.setenv("TUNELOOP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_quick_demo_on_tiny_model_writes_report_and_table(tiny_model_dir, tmp_path, home,
                                                          capfd):
    """check → split → baselines → LoRA → eval → iterate → report all run; the table has three
    variants and round 2; round 2 is recorded with round 1 as its parent (R16: its new rows share
    no 13-gram with the suite); no third-party progress bar or deprecation warning is printed."""
    out = io.StringIO()
    console = Console(file=out, width=140, force_terminal=False)
    workdir = tmp_path / "demo"
    result = run_demo(workdir, quick=True, progress=False, model=str(tiny_model_dir),
                      console=console)
    text = out.getvalue()

    assert [v.variant for v in result.variants] == list(VARIANTS)
    for v in result.variants:
        assert 0.0 <= v.pass_rate <= 1.0 and v.n_cases == 4
        assert v.heldout_loss is not None and v.heldout_loss > 0
    assert result.rows["kept"] == result.rows["read"] >= 300
    assert result.rows["train"] + result.rows["test"] == result.rows["kept"]
    assert result.contamination["contaminated"] == 0

    # the table and the report path are printed
    for needle in ("pass rate", "fact accuracy", "style accuracy", "held-out loss",
                   "base+prompt", "fine-tuned", "report:"):
        assert needle in text, needle
    html = result.report.read_text(encoding="utf-8")
    assert result.report == workdir / "report.html" and "fine-tuned" in html
    # the run dir is a model reference with an adapter; evals hold every variant's cases
    assert (result.run_dir / "model" / "adapter_config.json").is_file()
    for variant in VARIANTS:
        assert (workdir / "evals" / variant / "cases.jsonl").is_file()
    compare = json.loads((workdir / "evals" / "compare.json").read_text(encoding="utf-8"))
    assert set(compare["variants"]) == set(VARIANTS)
    saved = json.loads((workdir / "demo.json").read_text(encoding="utf-8"))
    assert saved["quick"] is True and len(saved["variants"]) == 3

    # round 2: the fine-tuned variant's failures targeted, recorded with its parent, reported
    from tuneloop.index import list_rounds

    assert [r["round"] for r in result.rounds] == [2]
    r2 = result.rounds[0]
    failed = sum(not c["results"]["fine-tuned"]["passed"] for c in compare["cases"])
    assert r2["targeted"] == failed and r2["dropped_contaminated"] >= 0
    assert r2["pass_rate_before"] == result.score("fine-tuned").pass_rate
    rounds = list_rounds(workdir / "loop")
    assert [r["round"] for r in rounds] == [1, 2] and rounds[1]["parent_id"] == rounds[0]["id"]
    assert "round 2 vs round 1:" in text and "fine-tuned, round 2" in text
    # the verdict: fixed/broken against round 1, the exact McNemar p, the intervals
    assert r2["verdict"] in ("improved", "no change", "regression")
    assert "exact McNemar p" in text and "95 % Wilson intervals" in text
    assert rounds[1]["verdict"] == r2["verdict"] and rounds[1]["p_value"] is not None
    # round 2 continued round 1's adapter (same LoRA, no merge): its model is still an adapter
    assert (workdir / "loop" / "round-002" / "run" / "model" / "adapter_config.json").is_file()
    assert 'id="rounds"' in html
    streams = capfd.readouterr()
    for noise in ("Loading weights", "FutureWarning", "it/s]"):
        assert noise not in streams.out + streams.err, noise

    # a second run refuses to clobber the workdir unless --overwrite
    with pytest.raises(UsageError, match="not empty"):
        run_demo(workdir, quick=True, progress=False, model=str(tiny_model_dir), console=console)
    # ... and with --overwrite a previous demo (recognised by its demo.json) is cleared
    _prepare_workdir(workdir, overwrite=True)
    assert workdir.is_dir() and not any(workdir.iterdir())


def test_overwrite_refuses_a_directory_that_is_not_a_demo(tmp_path, home):
    """Never delete user data: --overwrite only clears a previous demo workdir."""
    workdir = tmp_path / "mine"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(UsageError, match="does not look like a demo"):
        run_demo(workdir, quick=True, progress=False, overwrite=True)
    assert (workdir / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_demo_command_help_and_usage_error(tmp_path, capsys):
    """The CLI registers `demo`; a non-empty workdir is a clean usage error (exit 2)."""
    from tuneloop.cli import main

    assert main(["demo", "--help"]) == 0
    assert "before/after" in capsys.readouterr().out
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("data", encoding="utf-8")
    assert main(["demo", "--workdir", str(tmp_path / "x")]) == 2
    assert "not empty" in capsys.readouterr().err
