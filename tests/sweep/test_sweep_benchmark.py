"""benchmarks/sweep_embedded.py runs end to end (tiny model, few steps) and prints the best."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_benchmark_runs_on_the_tiny_model(tiny_model_dir, tmp_path):
    """Same script as on the embedded model, with --model pointing at the tiny one."""
    out = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sweep_embedded.py"), "--model",
         str(tiny_model_dir), "--trials", "2", "--max-steps", "4", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    saved = json.loads((out / "sweep.json").read_text())
    assert [t["state"] for t in saved["trials"]] == ["complete", "complete"]
    assert f"best: trial {saved['best']}: eval loss" in done.stdout
    assert "trial 1: complete after 4 steps" in done.stdout
    assert (out / "best.yaml").is_file() and (out / "report.html").is_file()
