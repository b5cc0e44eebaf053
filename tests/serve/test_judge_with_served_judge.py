"""`tuneloop eval judge` as a subprocess with `tuneloop serve` (tiny random model) as the judge.

The tiny model writes random text, so its verdicts are unparseable: the run must finish,
keep every raw output, and count them as excluded rather than scoring them (R18).
"""

from __future__ import annotations

import json
import os
import subprocess

from servehelp import TUNELOOP

from tuneloop.eval.judge_stats import parse_pair, parse_rating


def _judge(served, tmp_path, mode, models=None):
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": "a", "question": "Name a colour."}\n'
                 '{"id": "b", "turns": ["Hi", "Say more"]}\n')
    spec = f"openai:{served.url}/v1#{served.model}"
    out = tmp_path / f"out-{mode}"
    env = {**os.environ, "OPENAI_API_KEY": served.key, "TUNELOOP_HOME": str(tmp_path / "h")}
    # Pairwise needs two specs: the same server reached as 127.0.0.1 and as localhost.
    other = spec.replace("127.0.0.1", "localhost")
    models = models or (["--model", spec] if mode == "single" else
                        ["--model", spec, "--model", other])
    res = subprocess.run([TUNELOOP, "eval", "judge", "--questions", str(q), *models,
                          "--judge", spec, "--mode", mode, "--out", str(out),
                          "--max-tokens", "6", "--judge-max-tokens", "12"],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    return res, out


def test_served_tiny_judge_unparseable_counted_not_scored(served_tiny, tmp_path):
    """R18: every unparseable verdict is excluded and counted; nothing is scored as 0."""
    res, out = _judge(served_tiny, tmp_path, "single")
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    judgments = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(judgments) == summary["judge_outputs"] == 2
    unparseable = [j for j in judgments if parse_rating(j["raw"]) is None]
    assert unparseable, "a random tiny model should not produce [[N]] verdicts"
    assert summary["unparseable_outputs"] == len(unparseable)
    [r] = summary["results"]
    assert r["unparseable"] == len(unparseable) and r["n"] == 2 - len(unparseable)
    if r["n"] == 0:
        assert r["mean"] is None and r["ci95"] is None  # never a 0 score
    assert "judge outputs were unparseable" in res.stdout


def test_served_tiny_judge_pairwise_both_orders_excluded(served_tiny, tmp_path):
    """R17/R18: each pair is judged in both orders; unparseable pairs are excluded, counted."""
    res, out = _judge(served_tiny, tmp_path, "pairwise")
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    judgments = [json.loads(x) for x in (out / "judgments.jsonl").read_text().splitlines()]
    assert len(judgments) == 4 and sorted(j["order"] for j in judgments) == ["AB", "AB", "BA",
                                                                           "BA"]
    assert summary["unparseable_outputs"] == sum(parse_pair(j["raw"]) is None for j in judgments)
    [r] = summary["results"]
    assert r["n"] + r["excluded"] == 2
    assert r["excluded"] >= 1
    assert r["wins"] + r["losses"] + r["ties"] == r["n"]


def test_unknown_model_on_server_is_clean_error(served_tiny, tmp_path):
    """A model name the server does not serve → a clean 404 message, no traceback."""
    bad = f"openai:{served_tiny.url}/v1#not-served"
    res, _ = _judge(served_tiny, tmp_path, "single", models=["--model", bad])
    assert res.returncode != 0
    assert "HTTP 404" in res.stderr and "not served here" in res.stderr
    assert "Traceback" not in res.stderr
