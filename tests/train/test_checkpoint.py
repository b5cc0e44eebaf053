"""Checkpoint files, atomicity, rotation and safe loading (R2, R3, R4, R5, R7)."""

from __future__ import annotations

import json
import os
import pickle
import random

import numpy as np
import pytest
import torch

from tuneloop.errors import CheckpointError
from tuneloop.train import checkpoint as ckpt


def _save(root, step, **extra):
    weights = {"w": torch.full((2, 3), float(step)), "b": torch.arange(3.0)}
    opt = {"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    return ckpt.save_checkpoint(root, step, weights=weights, optimizer=opt,
                                scheduler={"last_epoch": step}, rng=ckpt.capture_rng(),
                                state={"epoch": 0, "position": step, **extra})


def test_checkpoint_holds_every_state_file_and_round_trips(tmp_path):
    """R2: weights (safetensors), optimizer, scheduler, RNG, step/epoch/position are all saved."""
    path = _save(tmp_path, 7)
    assert path.name == "step-000007"
    assert sorted(p.name for p in path.iterdir()) == sorted(ckpt.STATE_FILES)
    loaded = ckpt.load_checkpoint(path)
    assert torch.equal(loaded.weights["w"], torch.full((2, 3), 7.0))
    assert torch.equal(loaded.optimizer["state"][0]["exp_avg"], torch.ones(2))
    assert loaded.scheduler == {"last_epoch": 7}
    assert loaded.state["step"] == 7 and loaded.state["position"] == 7


def test_rng_states_restore_exactly():
    """R2: python, numpy and torch streams continue identically after restore."""
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = json.loads(json.dumps(ckpt.capture_rng()))  # must survive JSON
    first = (random.random(), np.random.rand(), torch.rand(3))
    ckpt.restore_rng(state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])


def test_weights_only_directory_refuses_to_resume(tmp_path):
    """R2: a step dir with only weights is not silently skipped; the error says what is missing."""
    _save(tmp_path, 2)
    only = tmp_path / "step-000004"
    only.mkdir()
    (only / "model.safetensors").write_bytes((tmp_path / "step-000002" / "model.safetensors")
                                             .read_bytes())
    with pytest.raises(CheckpointError, match="weights-only") as err:
        ckpt.find_latest_complete(tmp_path)
    assert "optimizer.pt" in str(err.value)
    with pytest.raises(CheckpointError, match="missing"):
        ckpt.load_checkpoint(only)


def test_partial_tmp_dir_is_ignored(tmp_path):
    """R3: a `.tmp-` directory left by a killed save is never picked."""
    _save(tmp_path, 3)
    partial = tmp_path / ".tmp-step-000006-999"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    assert ckpt.find_latest_complete(tmp_path).name == "step-000003"
    _save(tmp_path, 6)  # the next save clears stale partial dirs
    assert not partial.exists()
    assert ckpt.find_latest_complete(tmp_path).name == "step-000006"


def test_write_error_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    """R4: a failed write (disk full) → CheckpointError; earlier checkpoint untouched, no debris."""
    first = _save(tmp_path, 1)
    before = {p.name: p.read_bytes() for p in first.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="No space left") as err:
        _save(tmp_path, 2)
    assert "intact" in str(err.value)
    assert [p.name for p in tmp_path.iterdir()] == ["step-000001"]
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before


def test_rotation_keeps_last_n_and_best(tmp_path):
    """R5: keep-last-N plus keep-best never deletes the best, never every checkpoint."""
    for step in (1, 2, 3, 4, 5):
        _save(tmp_path, step)
    removed = ckpt.rotate(tmp_path, keep_last=2, best=tmp_path / "step-000002")
    assert sorted(p.name for p in removed) == ["step-000001", "step-000003"]
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "step-000002", "step-000004", "step-000005"]
    ckpt.rotate(tmp_path, keep_last=1, best=tmp_path / "step-000005")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-000005"]
    ckpt.rotate(tmp_path, keep_last=0, best=None)  # keep_last 0 still keeps the newest
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-000005"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    """R7: an optimizer.pt whose unpickling would run code is refused, and no code runs."""
    monkeypatch.chdir(tmp_path)
    path = _save(tmp_path, 1)
    with open(path / "optimizer.pt", "wb") as fh:
        pickle.dump({"state": _Evil()}, fh)
    with pytest.raises(CheckpointError, match="refusing"):
        ckpt.load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()
