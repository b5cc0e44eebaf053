"""The report plots MFU when runs logged it, and says nothing about it when none did."""

from __future__ import annotations

from pathlib import Path

from tuneloop.report.plots import mfu_over_steps
from tuneloop.report.runs import RunData


def test_mfu_plot_only_for_runs_that_logged_it():
    """A run with `mfu` in its train rows gets a PNG; runs without (older ones) get none."""
    old = RunData(path=Path("a"), name="old", train=[{"step": 1, "loss": 2.0}])
    assert mfu_over_steps([old]) is None
    new = RunData(path=Path("b"), name="new", run_info={"peak_dtype": "fp32"},
                  train=[{"step": s, "loss": 2.0, "mfu": 0.5 + s / 100} for s in range(1, 5)])
    png = mfu_over_steps([old, new])
    assert png is not None and png.startswith("data:image/png;base64,")
    assert len(png) > 1000


def test_report_html_shows_the_mfu_figure(fake_workspace, tmp_path):
    """write_report puts the MFU figure in the loss section when a run logged MFU."""
    import json

    from tuneloop.report import write_report

    metrics = fake_workspace.run_a / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line]
    with open(metrics, "a", encoding="utf-8") as fh:
        for r in rows:
            if r.get("kind") == "train":
                fh.write(json.dumps({**r, "mfu": 0.42}) + "\n")
    out = tmp_path / "report.html"
    write_report([fake_workspace.run_a], out=out, index_path=tmp_path / "none.sqlite")
    assert "Model-FLOPs utilisation per step" in out.read_text(encoding="utf-8")
