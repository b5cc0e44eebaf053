"""MFU: FLOPs per token by hand, device peaks (table and cached probe), MFU in every log."""

from __future__ import annotations

import json

import pytest
import torch

from tuneloop.rundir import read_metrics
from tuneloop.train import flops, train
from tuneloop.train.config import load_config


def _smollm2_135m():
    """SmolLM2-135M's shape (the embedded model) on the meta device: no memory, no download."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                      num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                      tie_word_embeddings=True)
    with torch.device("meta"):
        return LlamaForCausalLM(cfg)


def test_flops_per_token_by_hand():
    """6N + 12 L H Q T for SmolLM2-135M, N computed by hand from its shape."""
    model = _smollm2_135m()
    per_layer = (576 * 576 * 2      # q, o
                 + 576 * 192 * 2    # k, v: 3 kv heads x 64
                 + 3 * 576 * 1536   # gate, up, down
                 + 2 * 576)         # two RMSNorms
    n = 30 * per_layer + 576 + 49152 * 576  # final norm, tied head (counted once)
    assert n == 134_515_008
    assert flops.matmul_params(model) == n
    # Documents of 1024 tokens: T = 1024; and 12 * L * H * Q * T = 12 * 30 * 9 * 64 * 1024.
    expected = 6 * 134_515_008 + 12 * 30 * 9 * 64 * 1024
    assert flops.model_flops_per_token(model, [1024, 1024], "full") == expected == 1_019_426_688
    # Mixed lengths: T is sum(len^2)/sum(len) = (100^2 + 300^2) / 400 = 250.
    assert flops.mean_context([100, 300]) == 250.0


def test_untied_head_and_frozen_weights():
    """Untied: the head counts, the input embedding does not. Frozen weights cost 4, not 6."""
    from transformers import LlamaConfig

    cfg = LlamaConfig(num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      hidden_size=8, intermediate_size=16, vocab_size=10,
                      tie_word_embeddings=False)
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    layer = 4 * 8 * 8 + 3 * 8 * 16 + 2 * 8
    n = 2 * layer + 8 + 10 * 8
    assert flops.matmul_params(model) == n
    assert flops.flops_per_token(n, cfg, 0.0, trainable=100) == 4 * (n - 100) + 6 * 100


def test_gpu_table():
    """Known GPUs by name (PCIe H100 is not the SXM one); unknown ones are probed instead."""
    assert flops.gpu_table_peak("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert flops.gpu_table_peak("NVIDIA H100 PCIe", "bf16") == 756e12
    assert flops.gpu_table_peak("NVIDIA H200", "fp32") == 67e12
    assert flops.gpu_table_peak("NVIDIA A100-SXM4-80GB", "bf16") == 312e12
    assert flops.gpu_table_peak("Tesla V100-SXM2-16GB", "bf16") is None
    assert flops.gpu_table_peak("Some Future GPU", "bf16") is None


def test_cpu_peak_probed_once_and_cached(tmp_path, monkeypatch):
    """The CPU probe runs once; later calls (and processes) read tuneloop's cache dir."""
    monkeypatch.setenv("TUNELOOP_CACHE", str(tmp_path))
    calls = []

    def probe(dtype, device="cpu", size=flops.PROBE_SIZE, repeat=5):
        calls.append(dtype)
        return 123e9

    monkeypatch.setattr(flops, "probe_matmul", probe)
    monkeypatch.setattr(flops, "_busy", lambda: False)
    assert flops.cpu_peak("fp32") == 123e9
    assert flops.cpu_peak("fp32") == 123e9
    assert calls == ["fp32"]
    cached = json.loads((tmp_path / "device_peaks.json").read_text())
    assert list(cached.values()) == [123e9]


def test_cpu_peak_probed_on_a_busy_machine_is_not_cached(tmp_path, monkeypatch):
    """A probe while other processes hold the cores reads low: used for this run, never cached
    (a cached low peak would overstate MFU on that machine from then on)."""
    monkeypatch.setenv("TUNELOOP_CACHE", str(tmp_path))
    calls = []

    def probe(dtype, device="cpu", size=flops.PROBE_SIZE, repeat=5):
        calls.append(dtype)
        return 40e9

    monkeypatch.setattr(flops, "probe_matmul", probe)
    monkeypatch.setattr(flops, "_busy", lambda: True)
    assert flops.cpu_peak("fp32") == 40e9
    assert flops.cpu_peak("fp32") == 40e9
    assert calls == ["fp32", "fp32"]
    assert not (tmp_path / "device_peaks.json").exists()


def test_probe_measures_a_real_matmul():
    """The probe itself: a positive, finite FLOP/s of a small real matmul."""
    value = flops.probe_matmul("fp32", size=128, repeat=2)
    assert 1e6 < value < 1e15


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU peak path")
def test_mfu_in_metrics_and_run_json(make_config, tmp_path, monkeypatch):
    """Every train row has real tokens/s and mfu = tokens/s x FLOPs/token / peak; run.json
    gives the run's figures."""
    monkeypatch.setenv("TUNELOOP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(flops, "probe_matmul", lambda dtype, *a, **k: 1e9)
    res = train(load_config(make_config(training={"max_steps": 3})),
                output_dir=tmp_path / "run", progress=False)
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["peak_flops"] == 1e9 and info["peak_source"] == "probe:cpu"
    assert info["peak_dtype"] == "fp32"
    rows = [r for r in read_metrics(res.run_dir) if r["kind"] == "train"]
    assert len(rows) == 3
    for r in rows:
        assert r["tokens_per_s"] > 0
        assert r["mfu"] == pytest.approx(r["tokens_per_s"] * info["flops_per_token"] / 1e9)
    assert info["tokens_per_s"] > 0
    assert info["mfu"] == pytest.approx(info["tokens_per_s"] * info["flops_per_token"] / 1e9,
                                        rel=1e-3)
