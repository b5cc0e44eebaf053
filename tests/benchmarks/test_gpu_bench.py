"""benchmarks/gpu_bench.py runs end to end (on CPU, tiny model) so it is ready for a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.gpu_bench
def test_gpu_bench_end_to_end_on_cpu(tiny_model_dir, tmp_path):
    """TRL defaults and the shipped loop both train the tiny shape; every row has real tokens/s,
    MFU and peak memory, and the summary names both."""
    out = tmp_path / "rows.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUNELOOP_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_bench.py"), "--device", "cpu",
         "--model", str(tiny_model_dir), "--shapes", "tiny", "--steps", "2", "--warmup", "1",
         "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(out.read_text())
    names = [r["name"] for r in rows]
    assert names[0] == "trl" and any(n.startswith("tuneloop") for n in names), names
    for r in rows:
        assert r["shape"] == "tiny"
        assert r["real_tokens_per_s"] > 0 and r["peak_mib"] > 0
        assert 0 < r["mfu"] < 1
        assert r["flops_per_token"] > 0
    assert "tiny" in done.stdout and "MFU" in done.stdout
