"""The embedded model through `tuneloop eval suite`: base and base + system prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tuneloop.cli import main

SMOKE = Path(__file__).resolve().parents[2] / "examples" / "suites" / "smoke.yaml"


def read_variant(out: Path, variant: str) -> tuple[list[dict], dict]:
    rows = [json.loads(x) for x in (out / variant / "cases.jsonl").read_text().splitlines()]
    return rows, json.loads((out / variant / "summary.json").read_text())


@pytest.mark.integration
def test_smoke_suite_base_and_system_prompt(tmp_path, monkeypatch, capsys):
    """Exit 0 iff the weighted score reaches the threshold, else 1; one JSONL row per case with
    the real output, its checks and the exact prompt (system prompt included) it was given."""
    monkeypatch.setenv("TUNELOOP_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    code = main(["eval", "suite", str(SMOKE), "--model", "smollm2-135m-instruct",
                 "--out", str(out)])
    rows, summary = read_variant(out, "smollm2-135m-instruct")
    assert code == (0 if summary["passed"] else 1)
    assert [r["id"] for r in rows] == ["capital", "arithmetic", "brief"]
    assert all(r["output"].strip() and r["n_tokens"] > 0 for r in rows)
    assert all(r["prompt"] == [{"role": "user", "content": r["prompt"][-1]["content"]}]
               for r in rows)
    assert summary["pass_rate"] == sum(r["passed"] for r in rows) / 3

    # Same suite, stricter gate (threshold 1.0, one impossible check): must exit 1.
    strict = yaml.safe_load(SMOKE.read_text())
    strict["threshold"] = 1.0
    strict["cases"][2]["checks"].append({"not-contains": " "})  # any multi-word answer fails
    strict_path = tmp_path / "strict.yaml"
    strict_path.write_text(yaml.safe_dump(strict), encoding="utf-8")
    capsys.readouterr()
    code = main(["eval", "suite", str(strict_path), "--model", "smollm2-135m-instruct",
                 "--out", str(out), "--system-prompt", "Answer in one short sentence."])
    rows, summary = read_variant(out, "smollm2-135m-instruct+prompt")
    assert all(r["prompt"][0] == {"role": "system", "content": "Answer in one short sentence."}
               for r in rows)
    assert summary["passed"] is (summary["score"] >= 1.0)
    assert code == (0 if summary["passed"] else 1)
    if not summary["passed"]:
        assert "below its threshold" in capsys.readouterr().err
