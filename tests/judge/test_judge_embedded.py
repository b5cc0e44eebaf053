"""The embedded model as judge on 10 MT-Bench-style questions (FastChat files as shipped): every
verdict is read from its token probabilities, none unparseable (issue 15; R18)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneloop.cli import main

DATA = Path(__file__).parent / "data" / "mtbench"


@pytest.mark.integration
def test_embedded_judge_has_no_unparseable_verdicts(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["eval", "judge", "--questions", str(DATA / "question.jsonl"),
                 "--answers", str(DATA / "strong-model.jsonl"),
                 "--answers", str(DATA / "weak-model.jsonl"),
                 "--reference", str(DATA / "reference.jsonl"),
                 "--judge", "smollm2-135m-instruct", "--no-explanation", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge_outputs"] == 20
    assert summary["unparseable_outputs"] == 0
    assert summary["verdicts_by_method"] == {"probability": 20, "parsed": 0, "unparseable": 0}
    for r in summary["results"]:
        assert r["n"] == 10 and 1.0 <= r["mean"] <= 10.0
        dist = r["mean_distribution"]
        assert abs(sum(dist.values()) - 1.0) < 1e-3
    judgments = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    assert all(j["raw"].startswith("Rating: [[") and 0 < j["p_mass"] <= 1 for j in judgments)
    printed = capsys.readouterr().out
    assert "20 verdicts from the judge's token probabilities" in printed
