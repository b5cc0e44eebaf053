"""Kill -9 a real `tuneloop synth` process mid-run, rerun it: nothing lost, doubled or re-paid."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from fake_llm import FakeLLM, spec

TUNELOOP = str(Path(sys.executable).parent / "tuneloop")
TOPICS = ["otters", "glaciers", "tax forms", "violins", "sourdough", "comets", "bicycles",
          "volcanoes", "lighthouses", "beekeeping", "origami", "submarines", "cacti", "jazz",
          "marathons", "robots", "tides", "castles", "llamas", "fjords", "kites", "lanterns"]
VERBS = ["Explain", "Summarize", "Compare", "Describe", "Classify", "Plan", "Critique", "Teach"]


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def by_content(kind: str, text: str, n: int) -> str:
    """Deterministic in the prompt alone (requests arrive concurrently, in any order)."""
    h = _h(text)
    if kind == "instructions":
        a, b = TOPICS[h % len(TOPICS)], TOPICS[(h // 7) % len(TOPICS)]
        v1, v2 = VERBS[(h // 3) % len(VERBS)], VERBS[(h // 11) % len(VERBS)]
        return (f" {v1} how {a} differ from {b} for a curious reader.\n"
                f"10. {v2} the daily routine of someone who studies {a} seriously.\n"
                f"11. {v1} three facts number {h % 97} about {b}.")
    if kind == "classify":
        return "Yes" if "Classify" in text else "No"
    if kind == "instances_output_first":
        return f"Class label: first\nInput: case {h % 13}\nClass label: second\nInput: case {h % 7 + 20}"
    return f"Example 1\nInput: <noinput>\nOutput: answer {h % 1000}"


def _cmd(seeds: Path, url: str, out: Path) -> list[str]:
    return [TUNELOOP, "synth", "self-instruct", "--seeds", str(seeds), "--generator", spec(url),
            "--out", str(out), "--target", "14", "--batch", "3", "--instances", "2",
            "--no-progress"]


def _cached(out: Path) -> int:
    db = out / "requests.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_kill9_then_rerun_matches_uninterrupted_run(tmp_path):
    """Kill -9 while requests are in flight; the rerun continues from the cache: the final
    train.jsonl/rejects.jsonl equal an uninterrupted run's, and no request body is answered twice
    by the server across both attempts."""
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": f"Write a short note about {t}.",
                                         "input": "", "output": f"A note on {t}."}) + "\n"
                             for t in ["maps of cities", "rain", "tea", "chess", "birds",
                                       "clocks", "bridges"]))
    fake = FakeLLM(by_content)
    env = {**os.environ}
    with fake.serve() as url:
        ref = tmp_path / "ref"
        done = subprocess.run(_cmd(seeds, url, ref), env=env, capture_output=True, text=True,
                              check=False,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        ref_total = fake.total
        assert ref_total > 10 and max(fake.served.values()) == 1
        fake.reset()

        out = tmp_path / "killed"
        hold = ref_total // 2
        fake.hold_after(hold)
        proc = subprocess.Popen(_cmd(seeds, url, out), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        # Wait until the client is stuck on an unanswered request with every answer it got
        # already in its cache, then kill it the hard way.
        while not (fake.held and _cached(out) >= hold):
            assert proc.poll() is None, "synth finished before the hold point"
            assert time.time() < deadline, "client never reached the hold point"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        fake.release()
        partial = (out / "train.jsonl").read_text().splitlines()
        ref_rows = (ref / "train.jsonl").read_text().splitlines()
        assert len(partial) < len(ref_rows)

        again = subprocess.run(_cmd(seeds, url, out), env=env, capture_output=True, text=True,
                              check=False,
                               timeout=300)
        assert again.returncode == 0, again.stderr

    assert max(fake.served.values()) == 1, "a request was answered twice"
    assert fake.total == ref_total
    assert (out / "train.jsonl").read_text() == (ref / "train.jsonl").read_text()
    assert (out / "rejects.jsonl").read_text() == (ref / "rejects.jsonl").read_text()
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    keys = [json.dumps(r, sort_keys=True) for r in rows]
    assert len(set(keys)) == len(keys)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["resumed"] is True and stats["accepted"] == 14
    assert stats["requests"]["sent_this_invocation"] == ref_total - hold
