"""Both synth commands against a real `tuneloop serve` of the embedded model (integration).

The 135M model writes weak tasks and cannot follow the judge format, so the assertions are about
the pipeline, not the model: requests stay within budget, every row and reject is accounted for
and carries provenance, and a rerun is answered entirely from the run's cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "serve"))

from servehelp import TUNELOOP, start_server, stop_server

from tuneloop.data.provenance import row_source

pytestmark = pytest.mark.integration
HANDBOOK = Path(__file__).resolve().parents[2] / "src/tuneloop/resources/demo/handbook.md"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    s = start_server("smollm2-135m-instruct", tmp_path_factory.mktemp("serve-synth"), key=None)
    yield s
    stop_server(s.proc)


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([TUNELOOP, "synth", *args, "--no-progress"], capture_output=True,
                          text=True, env=env, timeout=600, check=False)


def test_self_instruct_and_docs_against_served_embedded_model(served, tmp_path):
    """Self-Instruct and docs end to end over HTTP; the self-instruct rerun sends nothing."""
    spec = f"openai:{served.url}/v1#{served.model}"
    seeds = tmp_path / "seeds.jsonl"
    pairs = [("Give two tips for sleeping well.", "Dim lights; keep a schedule."),
             ("Name a fruit that is yellow.", "A banana."),
             ("Explain what a noun is.", "A word for a thing."),
             ("Suggest a name for a cat.", "Pepper."),
             ("Translate 'thank you' into Spanish.", "Gracias."),
             ("List three colours of the rainbow.", "Red, green, blue.")]
    seeds.write_text("".join(json.dumps({"instruction": t, "input": "", "output": o}) + "\n"
                             for t, o in pairs))
    si = tmp_path / "si"
    args = ["self-instruct", "--seeds", str(seeds), "--generator", spec, "--out", str(si),
            "--target", "1", "--batch", "2", "--instances", "1", "--max-tokens", "48",
            "--instance-max-tokens", "48", "--max-requests", "4"]
    first = _run(args)
    assert first.returncode == 0, first.stderr
    stats = json.loads((si / "stats.json").read_text())
    assert stats["requests"]["total"] <= 4 and stats["requests"]["by_kind"]["instructions"] == 2
    rows = [json.loads(x) for x in (si / "train.jsonl").read_text().splitlines()]
    assert sum(row_source(json.dumps(r)) == "human" for r in rows) == 6
    assert all(row_source(json.dumps(r)) in ("human", "machine") for r in rows)
    assert stats["rows"]["machine"] == sum(r["meta"]["source"] == "machine" for r in rows)
    rejects = [json.loads(x) for x in (si / "rejects.jsonl").read_text().splitlines()]
    # every counted reject (and dropped instance) is a line of rejects.jsonl
    assert len(rejects) == stats["rejects_rows"] == stats["rejected_total"] + sum(
        stats["dropped_instances"].values())
    before = (si / "train.jsonl").read_text()
    again = _run(args)
    assert again.returncode == 0, again.stderr
    assert json.loads((si / "stats.json").read_text())["requests"]["sent_this_invocation"] == 0
    assert (si / "train.jsonl").read_text() == before

    docs = tmp_path / "docs"
    res = _run(["docs", str(HANDBOOK), "--generator", spec, "--out", str(docs),
                "--chunk-words", "150", "--overlap", "10", "--questions", "1",
                "--max-tokens", "64", "--judge-max-tokens", "24", "--max-requests", "3"])
    assert res.returncode == 0, res.stderr
    dstats = json.loads((docs / "stats.json").read_text())
    assert dstats["requests"]["by_kind"]["qa"] == 1 and dstats["requests"]["total"] <= 3
    kept = [json.loads(x) for x in (docs / "train.jsonl").read_text().splitlines()]
    dropped = [json.loads(x) for x in (docs / "rejects.jsonl").read_text().splitlines()]
    assert len(kept) == dstats["accepted"]
    text = HANDBOOK.read_text()
    for r in kept + dropped:
        start, end = r.get("meta", r)["span"]
        assert 0 <= start < end <= len(text)
    assert all(r["reason"] for r in dropped)
