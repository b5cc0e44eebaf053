"""`tuneloop sweep` from the command line on the tiny model, its clean errors, and the report's
trials section."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
import yaml

from tuneloop.cli import main
from tuneloop.index import list_evals, list_trials, record_trial
from tuneloop.report.build import write_report
from tuneloop.train.config import load_config


class _Table(HTMLParser):
    """The cells of the table inside <section id="trials">, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.rows, self._cell = False, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.inside = dict(attrs).get("id") == "trials"
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if self.inside and tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "section":
            self.inside = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _trial_table(html: str) -> list[list[str]]:
    parser = _Table()
    parser.feed(html)
    return parser.rows


def test_cli_end_to_end_with_a_suite_metric(sweep_config, tiny_suite, tmp_path, capsys):
    """LoRA on the tiny model, lora.r and the learning rate searched, scored by a suite: every
    trial is a run dir with its suite result in the index, and the files say the same."""
    out = tmp_path / "sweep"
    code = main(["sweep", str(sweep_config()), "--set", "method=lora", "--set", "lora.alpha=8",
                 "--param", "lora.r=2,4", "--param", "training.learning_rate=log:1e-4..1e-2",
                 "--trials", "2", "--metric", f"suite:{tiny_suite}", "--seed", "3",
                 "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "2 complete, 0 pruned, 0 failed" in printed
    assert f"best config: {out / 'best.yaml'}" in printed
    assert {p.name for p in out.iterdir()} == {"trial-000", "trial-001", "sweep.json",
                                               "best.yaml", "report.html"}
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["metric"] == f"suite:{tiny_suite}" and saved["direction"] == "maximize"
    assert [p["key"] for p in saved["params"]] == ["lora.r", "training.learning_rate"]
    rows = list_trials(out)
    assert [r["state"] for r in rows] == ["complete", "complete"]
    for row, trial in zip(rows, saved["trials"], strict=True):
        # the suite's "anything" case passes whatever the model says, "never" never does
        assert row["value"] == trial["value"] == 0.5
        assert row["params"] == trial["params"]
        [suite] = [e for e in list_evals(row["run_dir"]) if e["kind"] == "suite"]
        assert suite["name"] == "tiny-suite" and suite["score"] == 0.5
        config = yaml.safe_load((out / f"trial-{row['trial']:03d}" / "config.yaml").read_text())
        assert config["lora"]["r"] == row["params"]["lora.r"] and config["method"] == "lora"
    # A tie: the first best trial is the best.
    best = load_config(out / "best.yaml")
    assert saved["best"] == 0 and best.lora.r == rows[0]["params"]["lora.r"]
    assert best.training.learning_rate == rows[0]["params"]["training.learning_rate"]

    table = _trial_table((out / "report.html").read_text())
    assert table[0][:3] == ["Trial", "lora.r", "training.learning_rate"]
    assert [r[0] for r in table[1:]] == ["0 best", "1"]
    assert [r[1] for r in table[1:]] == [str(r["params"]["lora.r"]) for r in rows]
    assert [r[4] for r in table[1:]] == ["complete", "complete"]
    assert [r[5] for r in table[1:]] == ["6", "6"]


@pytest.mark.parametrize(("args", "says"), [
    (["--param", "training.learning_rate=1e-5..1e-2"], "neither a range nor a list"),
    (["--param", "training.learning_rate=log:1e-2..1e-5"], "LOW must be below HIGH"),
    (["--param", "training.lerning_rate=log:1e-5..1e-2"],
     "unknown key 'training.lerning_rate' (did you mean 'learning_rate'?)"),
    (["--param", "lora.r=2,4", "--metric", "bleu"], "'bleu' is not a metric"),
    (["--param", "lora.r=2,4", "--metric", "suite:missing.yaml"], "suite file not found"),
    (["--param", "lora.r=2,4", "--set", "data.eval_fraction=0"], "needs a held-out eval loss"),
])
def test_bad_arguments_exit_2_with_a_clean_message(sweep_config, tmp_path, capsys, args, says):
    """Checked before any training: one message naming the problem, no traceback, no files."""
    argv = ["sweep", str(sweep_config()), "--trials", "1", "--out", str(tmp_path / "s"), *args]
    if "--metric" not in args:
        argv += ["--metric", "eval_loss"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and "fix:" in err
    assert not (tmp_path / "s").exists()


def test_a_sweep_never_writes_into_a_non_empty_directory(sweep_config, tmp_path, capsys):
    out = tmp_path / "s"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["sweep", str(sweep_config()), "--param", "lora.r=2,4", "--metric", "eval_loss",
                 "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_trials_section_shows_every_state_and_escapes_text(tmp_path):
    """Rows straight from the index: complete (the best marked), pruned (at its step) and
    failed (its error, escaped); a sweep with no run dirs still renders."""
    sweep = tmp_path / "sweep"
    extra = {"metric": "eval_loss", "direction": "minimize"}
    record_trial(sweep, 0, params={"training.learning_rate": 0.000123456, "lora.r": 8},
                 state="complete", value=1.25, steps=6, extra=extra)
    record_trial(sweep, 1, params={"training.learning_rate": 0.01, "lora.r": 16},
                 state="complete", value=0.75, steps=6, extra=extra)
    record_trial(sweep, 2, params={"training.learning_rate": 1e-6, "lora.r": 8}, state="pruned",
                 steps=2, extra={**extra, "pruned_at_step": 2})
    record_trial(sweep, 3, params={"training.learning_rate": 9.0, "lora.r": 32}, state="failed",
                 extra={**extra, "error": "<script>alert(1)</script> loss became NaN"})
    out = tmp_path / "report.html"
    write_report([], out=out, sweep_dir=sweep)
    html = out.read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "2 complete, 1 pruned, 1 failed" in html
    table = _trial_table(html)
    assert [r[0] for r in table[1:]] == ["0", "1 best", "2", "3"]
    assert table[0][:3] == ["Trial", "lora.r", "training.learning_rate"]  # keys sorted
    assert [r[1] for r in table[1:]] == ["8", "16", "8", "32"]
    assert [r[2] for r in table[1:]] == ["0.0001235", "0.01", "1e-06", "9"]
    assert [r[4] for r in table[1:]] == [
        "complete", "complete", "pruned at step 2",
        "failed<script>alert(1)</script> loss became NaN"]  # the badge, then the error
