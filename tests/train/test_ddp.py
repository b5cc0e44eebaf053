"""Two CPU processes (torchrun, gloo) equal one process with the same global batch (R27, R28)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from ddp_launch import torchrun_train_cmd

from tuneloop.errors import CheckpointError
from tuneloop.rundir import read_metrics
from tuneloop.train import train
from tuneloop.train.config import load_config


def _weights(run: Path):
    from safetensors.torch import load_file

    return load_file(str(run / "model" / "model.safetensors"))


def test_two_processes_equal_one_and_resume_across_world_sizes(make_config, tmp_path):
    """R27: torchrun 2 procs x accum 1 == 1 proc x accum 2 (loss per step, final weights, 1e-5);
    only rank 0 writes. R28: the 2-process checkpoint resumes in 1 process with the same global
    batch and reaches the same weights; a different global batch fails fast with the fix."""
    sections = {"training": {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-3, "seed": 1},
                "save": {"interval": 2, "keep_last": 2}}
    cfg = make_config(**sections)
    run2 = tmp_path / "ddp2"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        torchrun_train_cmd(cfg, run2), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run: ") == 1  # only rank 0 reports

    one = train(load_config(cfg, ["training.gradient_accumulation=2"]),
                output_dir=tmp_path / "one", progress=False)
    rows2 = [r for r in read_metrics(run2) if r["kind"] == "train"]
    rows1 = [r for r in read_metrics(one.run_dir) if r["kind"] == "train"]
    assert [r["step"] for r in rows2] == [1, 2, 3, 4]  # written once, by rank 0
    for a, b in zip(rows1, rows2, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["lr"] == b["lr"]
    w1, w2 = _weights(one.run_dir), _weights(run2)
    assert w1.keys() == w2.keys()
    for k in w1:
        assert (w1[k] - w2[k]).abs().max().item() < 1e-5, k

    # R28: continue the 2-process run from step 2 with one process and the same global batch.
    moved = tmp_path / "moved"
    shutil.copytree(run2, moved)
    shutil.rmtree(moved / "checkpoints" / "step-000004")
    with pytest.raises(CheckpointError, match="micro-batches per step") as err:
        train(load_config(cfg), resume=True, output_dir=moved, progress=False)
    assert "gradient_accumulation=2" in str(err.value)
    res = train(load_config(cfg, ["training.gradient_accumulation=2"]), resume=True,
                output_dir=moved, progress=False)
    assert res.resumed_from == 2 and res.steps == 4
    w3 = _weights(moved)
    for k in w1:
        assert (w1[k] - w3[k]).abs().max().item() < 1e-5, k
