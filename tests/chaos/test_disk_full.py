"""A run on a real, small filesystem (tmpfs mounted by the test) fills it during a checkpoint
write; the user gets one clear message, the run is marked failed, and --resume after freeing
space continues the same run (R4)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
from chaoshelp import same_weights, train_rows, weights, write_config, write_rows

from tuneloop.train.checkpoint import TMP_PREFIX, load_checkpoint


def _mount_tmpfs(path: Path, kib: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): "
                    f"{res.stderr.strip() or res.returncode}")


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def test_disk_full_during_save_fails_cleanly_and_resume_continues(launcher, tiny_model_dir,
                                                                   tmp_path):
    """R4: full fine-tuning into a tmpfs sized for 1.5 checkpoints: step 2 is saved, step 4
    fills the disk. Exit 1 with "No space left on tmpfs at … while saving step 4 (needs ≈ N MB;
    step 2 is intact; …)", no traceback, a warning before the save, status failed in run.json
    and the index, no temp directory left, step 2 byte-identical to the reference run's; after
    the tmpfs is remounted bigger, --resume finishes with the reference losses and weights."""
    data = write_rows(tmp_path / "data.jsonl", 48)
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model_dir, data, method="full", lora=None,
                       training={"max_steps": 6}, save={"interval": 2, "keep_last": 1})
    ref = tmp_path / "ref"
    rc = launcher.run(["train", cfg, "--output-dir", ref, "--no-progress",
                       "--set", "save.keep_last=5"], tmp_path / "ref.log")
    assert rc == 0, (tmp_path / "ref.log").read_text()[-3000:]
    ckpt_bytes = _dir_bytes(ref / "checkpoints" / "step-000002")
    assert ckpt_bytes > 500_000  # a full-model checkpoint: big enough to size the disk by

    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, int(ckpt_bytes * 1.5) // 1024)
    try:
        run, log = mnt / "run", tmp_path / "full.log"
        rc = launcher.run(["train", cfg, "--output-dir", run, "--no-progress"], log)
        text = log.read_text()
        assert rc == 1, text[-3000:]
        assert "Traceback" not in text
        assert f"No space left on tmpfs at {mnt} while saving step 4 (needs ≈" in text, text
        assert "step 2 is intact; free space and run with --resume)" in text
        assert "warning: step 4: the next checkpoint needs" in text  # said before the write
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "failed" and info["steps"] == 4, info
        assert "No space left" in info["error"]
        from tuneloop.index import list_runs

        row = next(r for r in list_runs(index=launcher.home / "index.sqlite")
                   if r["run_dir"] == str(run.resolve()))
        assert row["status"] == "failed"
        ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
        assert ckpts == ["step-000002"], ckpts  # no .tmp- directory, the old one kept
        assert not any(n.startswith(TMP_PREFIX) for n in ckpts)
        for name in ("model.safetensors", "optimizer.pt", "trainer_state.json"):
            assert (run / "checkpoints/step-000002" / name).read_bytes() == \
                (ref / "checkpoints/step-000002" / name).read_bytes(), name
        load_checkpoint(run / "checkpoints" / "step-000002")

        # Free space (a bigger filesystem), then the same command with --resume.
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        log2 = tmp_path / "resume.log"
        rc = launcher.run(["train", cfg, "--output-dir", run, "--no-progress", "--resume"], log2)
        assert rc == 0, log2.read_text()[-3000:]
        want = {r["step"]: r for r in train_rows(ref)}
        got = train_rows(run)
        assert sorted({r["step"] for r in got}) == list(range(1, 7))
        for r in got:
            assert math.isclose(r["loss"], want[r["step"]]["loss"], abs_tol=1e-6), r
        assert same_weights(weights(run / "model" / "model.safetensors"),
                            weights(ref / "model" / "model.safetensors"), 1e-6)
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "completed" and info["resumed_from"] == 2
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
