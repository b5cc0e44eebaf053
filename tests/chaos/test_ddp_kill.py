"""Two torchrun processes (gloo, CPU); one rank is SIGKILLed from outside mid-run: both exit
(no hang), no checkpoint is corrupt, and the run resumes to the uninterrupted result (R27, R28)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
from pathlib import Path

from chaoshelp import (
    NewRows,
    same_weights,
    train_rows,
    wait_until,
    weights,
    write_config,
    write_rows,
)
from ddp_launch import torchrun_train_cmd

from tuneloop.train.checkpoint import TMP_PREFIX, find_latest_complete, load_checkpoint


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of the worker with RANK=rank among parent's descendants."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().split(")")[-1].split()
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) == parent and f"RANK={rank}".encode() in env:
            return int(entry)
    return None


def test_one_rank_sigkilled_both_exit_and_resume_works(launcher, tiny_model_dir, tmp_path):
    """R27, R28: torchrun 2 processes; after step 3 the test SIGKILLs rank 1. Within 90 s the
    whole job has exited non-zero; every complete checkpoint loads, no temp directory is left;
    resuming in one process with the same global batch (gradient_accumulation 2) finishes and
    matches an uninterrupted one-process run (loss per step and final weights, 1e-5)."""
    data = write_rows(tmp_path / "data.jsonl", 32)
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model_dir, data, method="full", lora=None,
                       training={"max_steps": 8, "batch_size": 4, "learning_rate": 1e-3},
                       save={"interval": 2, "keep_last": 3})
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUNELOOP_HOME": str(launcher.home)}
    log = open(tmp_path / "ddp.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        torchrun_train_cmd(cfg, run), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        new = NewRows(run)
        assert wait_until(lambda: new.last_step() >= 3, 180, proc.pid, poll=0.01), \
            (tmp_path / "ddp.log").read_text()[-3000:]
        victim = _rank_pid(proc.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        rc = proc.wait(timeout=90)  # no hang: the surviving rank and torchrun exit too
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert rc != 0
    assert _rank_pid(proc.pid, 0) is None
    text = (tmp_path / "ddp.log").read_text()
    ckpts = run / "checkpoints"
    assert not [p for p in ckpts.iterdir() if p.name.startswith(TMP_PREFIX)], text[-3000:]
    for p in ckpts.iterdir():
        load_checkpoint(p)  # every complete checkpoint is readable, nothing half-written
    latest = find_latest_complete(ckpts)
    assert latest is not None
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed", (info, text[-3000:])
    assert "another training process stopped during step" in info["error"]
    assert "error: " in text and "likely a bug" not in text  # rank 0: one clear message

    accum = ["--set", "training.gradient_accumulation=2"]
    rc = launcher.run(["train", cfg, "--output-dir", run, "--no-progress", "--resume", *accum],
                      tmp_path / "resume.log")
    assert rc == 0, (tmp_path / "resume.log").read_text()[-3000:]
    ref = tmp_path / "one"
    rc = launcher.run(["train", cfg, "--output-dir", ref, "--no-progress", *accum],
                      tmp_path / "one.log")
    assert rc == 0
    want = {r["step"]: r["loss"] for r in train_rows(ref)}
    for r in train_rows(run):
        assert math.isclose(r["loss"], want[r["step"]], abs_tol=1e-5), r
    assert same_weights(weights(run / "model" / "model.safetensors"),
                        weights(ref / "model" / "model.safetensors"), 1e-5)
