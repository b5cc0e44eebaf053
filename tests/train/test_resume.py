"""Kill -9 mid-epoch / mid-save, resume, and compare with the uninterrupted run (R1, R3, R6)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from runrows import train_rows_by_step

from tuneloop.errors import CheckpointError
from tuneloop.train import train
from tuneloop.train.checkpoint import TMP_PREFIX, find_latest_complete
from tuneloop.train.config import load_config

# LoRA with dropout: the resumed run is only equal if the RNG state is restored too.
SECTIONS = {"method": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
                "training": {"max_steps": 7, "batch_size": 4, "learning_rate": 2e-3, "seed": 3,
                          "scheduler": "cosine", "warmup_steps": 2},
                "save": {"interval": 2, "keep_last": 1}}


KILLER = Path(__file__).with_name("killer.py")


def _run_killed(cfg_path: Path, run: Path, *kill: str) -> subprocess.CompletedProcess:
    """Train in a child process that SIGKILLs itself from a hook (tests/train/killer.py)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(KILLER), str(cfg_path), str(run), *kill],
                          check=False, env=env, capture_output=True, text=True, timeout=300)


def _config(make_config):
    return make_config(**SECTIONS)


def test_kill_mid_epoch_then_resume_equals_uninterrupted(make_config, tmp_path):
    """R1: SIGKILL after step 5 (last save at 4), --resume: steps 5..7 match loss/lr within 1e-6."""
    cfg_path = _config(make_config)
    full = train(load_config(cfg_path), output_dir=tmp_path / "full", progress=False)
    assert full.steps == 7
    ref = train_rows_by_step(full.run_dir)

    run = tmp_path / "killed"
    proc = _run_killed(cfg_path, run, "--after-step", "5")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert find_latest_complete(run / "checkpoints").name == "step-000004"
    assert not (run / "model").exists()

    resumed = train(load_config(cfg_path), resume=True, output_dir=run, progress=False)
    assert resumed.resumed_from == 4 and resumed.steps == 7
    got = train_rows_by_step(run, after_resume=True)
    assert sorted(got) == [5, 6, 7]
    for step in got:
        assert got[step]["loss"] == pytest.approx(ref[step]["loss"], abs=1e-6), step
        assert got[step]["lr"] == pytest.approx(ref[step]["lr"], abs=1e-9), step
    # the same final weights, not only the same logged numbers
    from safetensors.torch import load_file

    a = load_file(str(full.run_dir / "model" / "adapter_model.safetensors"))
    b = load_file(str(run / "model" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max().item() < 1e-6, k
    assert json.loads((run / "run.json").read_text())["resumed_from"] == 4


def test_kill_during_save_resumes_from_last_complete(make_config, tmp_path):
    """R3: SIGKILL half-way through writing step 4: the partial dir is ignored, resume uses 2."""
    cfg_path = _config(make_config)
    run = tmp_path / "run"
    proc = _run_killed(cfg_path, run, "--in-save", "4")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    partial = [p for p in (run / "checkpoints").iterdir() if p.name.startswith(TMP_PREFIX)]
    assert partial, "the killed save should have left a partial tmp dir"
    assert (partial[0] / "model.safetensors").exists()
    assert find_latest_complete(run / "checkpoints").name == "step-000002"

    resumed = train(load_config(cfg_path), resume=True, output_dir=run, progress=False)
    assert resumed.resumed_from == 2 and resumed.steps == 7
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(TMP_PREFIX)]
    assert (run / "model" / "adapter_model.safetensors").exists()


def test_resume_refuses_changed_data_or_config_unless_forced(make_config, tmp_path, chat_data):
    """R6: a changed learning rate or data file refuses to resume (fingerprints); a changed
    save interval (no effect on the trajectory) does not; --force-resume continues."""
    data = tmp_path / "data.jsonl"
    data.write_text(chat_data.read_text())
    cfg_path = make_config(data={"train": [str(data)], "eval_fraction": 0.0, "max_length": 96},
                           training={"max_steps": 2, "batch_size": 8}, save={"interval": 1})
    run = train(load_config(cfg_path), output_dir=tmp_path / "run", progress=False).run_dir
    with pytest.raises(CheckpointError, match="config changed"):
        train(load_config(cfg_path, ["training.learning_rate=0.5"]), resume=True, output_dir=run,
              progress=False)
    res = train(load_config(cfg_path, ["save.interval=5"]), resume=True, output_dir=run,
                progress=False)
    assert res.resumed_from == 2 and res.steps == 2
    lines = data.read_text().splitlines()
    data.write_text("\n".join(lines[:-3]) + "\n")  # drop three rows
    longer = ["training.max_steps=3"]
    with pytest.raises(CheckpointError, match="data changed"):
        train(load_config(cfg_path, longer), resume=True, output_dir=run, progress=False)
    again = train(load_config(cfg_path, longer), resume=True, force_resume=True, output_dir=run,
                  progress=False)
    assert again.resumed_from == 2 and again.steps == 3
