"""bf16 on a CPU: autocast over fp32 master weights, chosen by `auto` only with native kernels."""

from __future__ import annotations

import pytest
import torch

from tuneloop.errors import ConfigError
from tuneloop.rundir import read_metrics
from tuneloop.train import flops, setup, train
from tuneloop.train.config import load_config

# The stated tolerance that lets `auto` choose bf16 on a native-bf16 CPU (setup.precision).
MAX_RELATIVE_LOSS_GAP = 0.02

cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="checks CPU precision choices")


@pytest.fixture
def fake_native_bf16(monkeypatch, tmp_path):
    """Pretend oneDNN has native bf16; the MFU peak probe is stubbed (an emulated bf16 2048^3
    matmul probe takes minutes on a CPU without native bf16, and says nothing here)."""
    monkeypatch.setattr(setup, "cpu_native_bf16", lambda: True)
    monkeypatch.setattr(flops, "probe_matmul", lambda dtype, *a, **k: 1e11)
    monkeypatch.setenv("TUNELOOP_CACHE", str(tmp_path / "cache"))


@cpu_only
def test_cpu_without_native_bf16(monkeypatch):
    """No native bf16: `bf16` is a clear config error, `auto` is fp32, fp16 still needs a GPU."""
    monkeypatch.setattr(setup, "cpu_native_bf16", lambda: False)
    with pytest.raises(ConfigError, match="native bf16") as err:
        setup.precision("bf16")
    assert err.value.fix == "use auto or fp32"
    assert setup.precision("auto") == "no"
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        setup.precision("fp16")


@cpu_only
def test_cpu_with_native_bf16(monkeypatch):
    """Native bf16: `bf16` is accepted and `auto` picks it; `fp32` always means fp32."""
    monkeypatch.setattr(setup, "cpu_native_bf16", lambda: True)
    assert setup.precision("bf16") == "bf16"
    assert setup.precision("auto") == "bf16"
    assert setup.precision("fp32") == "no"


def test_detection_agrees_with_onednn():
    """cpu_native_bf16 is oneDNN's own answer (no guessing from the CPU name)."""
    assert setup.cpu_native_bf16() == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@cpu_only
def test_bf16_loss_curve_tracks_fp32(make_config, tmp_path, fake_native_bf16):
    """20 steps of the tiny model: bf16 autocast keeps fp32 master weights, and its loss curve
    stays within MAX_RELATIVE_LOSS_GAP of fp32 at every step (the gate for `auto` = bf16).
    On a CPU without native bf16 the same kernels are emulated: slower, numerically the same."""
    curves = {}
    for prec in ("fp32", "bf16"):
        cfg = load_config(make_config(f"{prec}.yaml", training={
            "max_steps": 20, "precision": prec, "learning_rate": 3e-3}, save={"interval": 100},
            eval={"interval": 100}))
        res = train(cfg, output_dir=tmp_path / prec, progress=False)
        rows = [r for r in read_metrics(res.run_dir) if r["kind"] == "train"]
        curves[prec] = [r["loss"] for r in rows]
    assert len(curves["fp32"]) == len(curves["bf16"]) == 20
    assert curves["fp32"] != curves["bf16"]  # bf16 really ran (autocast changes the numbers)
    gaps = [abs(b - f) / f for f, b in zip(curves["fp32"], curves["bf16"], strict=True)]
    assert max(gaps) <= MAX_RELATIVE_LOSS_GAP, gaps
    assert curves["bf16"][-1] < curves["bf16"][0]  # and it learns


@cpu_only
def test_bf16_keeps_fp32_master_weights(make_config, tmp_path, fake_native_bf16):
    """The saved weights of a bf16 run are fp32 (autocast, not a bf16 model)."""
    from safetensors import safe_open

    cfg = load_config(make_config(training={"max_steps": 2, "precision": "bf16"},
                                  save={"interval": 100}))
    res = train(cfg, output_dir=tmp_path / "run", progress=False)
    files = list((res.run_dir / "model").glob("*.safetensors"))
    assert files
    with safe_open(str(files[0]), "pt") as fh:
        dtypes = {fh.get_tensor(k).dtype for k in fh.keys()}  # noqa: SIM118
    assert dtypes == {torch.float32}
