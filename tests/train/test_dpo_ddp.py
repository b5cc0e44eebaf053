"""DPO under two CPU processes (torchrun, gloo) equals one process with the same global batch
(R27): the loop normalises by pairs over all processes; the full-FT reference cache is written
once by rank 0 and read by both; the LoRA reference pass runs outside the DDP wrapper."""

from __future__ import annotations

import os
import subprocess

import pytest
from ddp_launch import torchrun_train_cmd
from pairs import write_pair_rows

from tuneloop.rundir import read_metrics
from tuneloop.train import train
from tuneloop.train.config import load_config
from tuneloop.train.objectives.dpo import REFERENCE_CACHE


@pytest.mark.parametrize("method", ["full", "lora"])
def test_two_processes_equal_one(make_config, tmp_path, method):
    """R27: 2 procs x accum 1 == 1 proc x accum 2: loss and reward metrics per step, weights."""
    data = write_pair_rows(tmp_path / "pairs.jsonl", 20)
    cfg = make_config(objective="dpo", method=method, lora={"r": 4, "alpha": 8, "dropout": 0.0},
                      data={"train": [str(data)], "eval_fraction": 0.2, "max_length": 96},
                      training={"max_steps": 3, "batch_size": 2, "learning_rate": 1e-3,
                                "seed": 1},
                      save={"interval": None}, eval={"at_start": False})
    run2 = tmp_path / "ddp2"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        torchrun_train_cmd(cfg, run2), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = train(load_config(cfg, ["training.gradient_accumulation=2"]),
                output_dir=tmp_path / "one", progress=False)
    rows2 = [r for r in read_metrics(run2) if r["kind"] in ("train", "eval")]
    rows1 = [r for r in read_metrics(one.run_dir) if r["kind"] in ("train", "eval")]
    assert [(r["kind"], r["step"]) for r in rows2] == [(r["kind"], r["step"]) for r in rows1]
    for a, b in zip(rows1, rows2, strict=True):
        for key in ("loss", "eval_loss", "reward_margin", "reward_accuracy", "logps_chosen"):
            if key in a:
                assert a[key] == pytest.approx(b[key], abs=1e-5), (a["step"], key)
    assert (run2 / REFERENCE_CACHE).exists() == (method == "full")
    from safetensors.torch import load_file

    name = "model.safetensors" if method == "full" else "adapter_model.safetensors"
    w1, w2 = load_file(str(one.run_dir / "model" / name)), load_file(str(run2 / "model" / name))
    assert w1.keys() == w2.keys()
    for k in w1:
        assert (w1[k] - w2[k]).abs().max().item() < 1e-5, k
