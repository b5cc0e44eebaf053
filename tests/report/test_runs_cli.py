"""`tuneloop runs` and `tuneloop report` through the real CLI entry point."""

from __future__ import annotations

import json

from tuneloop import index
from tuneloop.cli import main


def _record(run_dir, name, score=None):
    index.record_run(run_dir, name=name, model="smollm2-135m-instruct", method="lora",
                     data_fingerprint="a1b2c3d4e5f6a7b8c9d0", steps=50, best_eval_loss=1.23456,
                     status="completed", config={"train": {"lr": 2e-4}})
    if score is not None:
        index.record_eval(model_ref=str(run_dir), kind="suite", name="smoke", score=score, n=4,
                          run_dir=run_dir)


def test_runs_table_and_json(tmp_path, monkeypatch, capsys):
    """The table shows name, short fingerprint, steps, loss and latest suite score; --json too."""
    monkeypatch.setenv("TUNELOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")
    _record(tmp_path / "r1", "first-run", score=0.5)
    _record(tmp_path / "r1", "first-run", score=None)  # upsert: still one row
    index.record_eval(model_ref="x", kind="suite", name="smoke", score=0.75, n=4,
                      run_dir=tmp_path / "r1")
    _record(tmp_path / "r2", "[bold]second[/bold]")  # markup in names is shown literally
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "first-run" in out and "[bold]second[/bold]" in out
    assert "a1b2c3d4e5f6" in out and "a1b2c3d4e5f6a" not in out
    assert "75.0%" in out and "1.2346" in out and "completed" in out
    assert main(["runs", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["first-run"]["latest_suite_score"] == 0.75
    assert rows["[bold]second[/bold]"]["latest_suite_score"] is None


def test_runs_with_no_index_says_so(tmp_path, monkeypatch, capsys):
    """No index yet: a friendly line, exit 0, and no index file created as a side effect."""
    monkeypatch.setenv("TUNELOOP_HOME", str(tmp_path / "home"))
    assert main(["runs"]) == 0
    assert "No runs recorded yet" in capsys.readouterr().out
    assert not (tmp_path / "home").exists()


def test_report_command_writes_file_and_bad_path_is_clean(fake_workspace, tmp_path, monkeypatch,
                                                          capsys):
    """`report` writes the HTML and prints counts; a bad path is one message, exit 2, no traceback."""
    monkeypatch.setenv("TUNELOOP_HOME", str(tmp_path / "home"))
    out = tmp_path / "rep" / "report.html"
    code = main(["report", str(fake_workspace.run_a), str(fake_workspace.run_b),
                 "--compare", str(fake_workspace.compare), "--out", str(out)])
    assert code == 0
    assert out.is_file() and "2 flipped" in capsys.readouterr().out
    code = main(["report", str(tmp_path / "missing-run"), "--out", str(tmp_path / "x.html")])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing-run: run directory not found" in err and "fix:" in err
    assert "Traceback" not in err
