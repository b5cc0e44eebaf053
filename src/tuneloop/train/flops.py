"""Model FLOPs per token and the device's peak, for model-FLOPs utilisation (MFU).

FLOPs per trained-on token, as PaLM (appendix B) and nanoGPT count them:

    full fine-tuning:  6 * N + 12 * L * H * Q * T
    frozen weights:    4 * N_frozen + 6 * N_trainable + 12 * L * H * Q * T   (LoRA)

N: the parameters every token multiplies through (all weights except the input embedding lookup;
the LM head counts once, tied or not), L layers, H attention heads, Q head dim, T the attention
context. Forward is 2 FLOPs per weight, backward 4 (gradient wrt activations and wrt weights); a
frozen weight (LoRA base) skips its weight gradient, hence 4 per frozen weight. The attention term is the score and
value matmuls (2 * 2 * H * Q * T per token and layer forward, x3 with backward). Packed rows attend
per document, so T is the token-weighted mean document length sum(len^2) / sum(len) — a token of a
document of length l attends over l positions (counted non-causally, as PaLM does).

MFU = tokens/s * FLOPs per token / peak FLOP/s of the device at the precision used. Peak: for a
GPU, a table of known devices (dense tensor-core figures from the vendors' data sheets); for a CPU
(or an unknown GPU), a 2048 x 2048 matmul probe, best of 5, measured once per CPU, thread count and
torch version and cached in tuneloop's cache directory.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

# Dense (no sparsity) peak FLOP/s. fp32: what fp32 training gets (TF32 tensor cores where torch
# allows them is not assumed: torch keeps matmuls in full fp32 by default).
GPU_PEAKS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"bf16": 756e12, "fp32": 51e12},
    "H100": {"bf16": 989e12, "fp32": 67e12},
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "GH200": {"bf16": 989e12, "fp32": 67e12},
    "B200": {"bf16": 2250e12, "fp32": 80e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
    "L40S": {"bf16": 362e12, "fp32": 91.6e12},
    "L4": {"bf16": 121e12, "fp32": 30.3e12},
    "A10G": {"bf16": 70e12, "fp32": 31.2e12},
    "A10": {"bf16": 125e12, "fp32": 31.2e12},
    "RTX 4090": {"bf16": 165e12, "fp32": 82.6e12},
    "V100": {"bf16": 0.0, "fp32": 15.7e12},  # no bf16 tensor cores
}

PROBE_SIZE = 2048


def _cfg(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def matmul_params(model: Any) -> int:
    """N: parameters every token multiplies through (input embedding lookup excluded; the LM
    head counted once even when tied to the embedding)."""
    base = getattr(model, "module", model)
    base = base.get_base_model() if hasattr(base, "get_base_model") else base
    seen: set[int] = set()
    total = 0
    emb = base.get_input_embeddings() if hasattr(base, "get_input_embeddings") else None
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    head_weight = getattr(head, "weight", None)
    emb_weight = getattr(emb, "weight", None)
    for p in base.parameters():
        if id(p) in seen or (p is emb_weight and p is not head_weight):
            continue  # shared weights once; the input lookup is not a matmul
        seen.add(id(p))
        total += p.numel()
    return total


def attention_flops_per_token(config: Any, context: float) -> float:
    """12 * L * H * Q * T (forward + backward of QK^T and AV)."""
    layers = _cfg(config, "num_hidden_layers", "n_layer", default=0)
    heads = _cfg(config, "num_attention_heads", "n_head", default=0)
    hidden = _cfg(config, "hidden_size", "n_embd", default=0)
    head_dim = _cfg(config, "head_dim", default=hidden // heads if heads else 0)
    return 12.0 * layers * heads * head_dim * context


def flops_per_token(n_params: int, config: Any, context: float, *,
                    trainable: int | None = None) -> float:
    """Training FLOPs per token: all weights trained (trainable None), or frozen + trained."""
    attn = attention_flops_per_token(config, context)
    if trainable is None or trainable >= n_params:
        return 6.0 * n_params + attn
    return 4.0 * (n_params - trainable) + 6.0 * trainable + attn


def mean_context(lengths: list[int]) -> float:
    """Token-weighted mean document length: sum(len^2) / sum(len)."""
    total = sum(lengths)
    return sum(n * n for n in lengths) / total if total else 0.0


def model_flops_per_token(model: Any, lengths: list[int], method: str) -> float:
    """FLOPs per token for training `model` on documents of these lengths."""
    n = matmul_params(model)
    cfg = getattr(getattr(model, "module", model), "config", None)
    trainable = None
    if method != "full":
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return flops_per_token(n, cfg, mean_context(lengths), trainable=trainable)


def gpu_table_peak(name: str, dtype: str) -> float | None:
    """Peak FLOP/s of a known GPU by (a substring of) its name; None if not in the table."""
    for key, peaks in GPU_PEAKS.items():  # ordered: "H100 PCIe" before "H100"
        if key.lower() in name.lower():
            return peaks.get(dtype) or None
    return None


def probe_matmul(dtype: str, device: str = "cpu", size: int = PROBE_SIZE, repeat: int = 20) -> float:
    """Best-of-`repeat` FLOP/s of a size x size matmul.

    20, not 5: on a shared 2-core VM single 2048^3 products ranged 124-171 GFLOP/s within one
    second and best-of-5 probes read 122-162, so a short probe understated the peak (and
    overstated MFU) by up to a quarter; 20 products take about 2 s there."""
    import torch

    tdtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a = torch.randn(size, size, device=device).to(tdtype)
    b = torch.randn(size, size, device=device).to(tdtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b  # warm-up
    sync()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size ** 3 / best


def _cpu_key() -> str:
    import platform

    import torch

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}|threads={torch.get_num_threads()}|torch={torch.__version__}"


def _busy() -> bool:
    """More runnable processes (1-minute load average) than cores, counting our own one."""
    try:
        return os.getloadavg()[0] > (os.cpu_count() or 1)
    except OSError:
        return False


def cpu_peak(dtype: str) -> float:
    """The CPU's matmul peak at `dtype`, probed once and cached (tuneloop cache dir); a probe
    taken while the machine is busy is used but not cached."""
    from tuneloop.models import cache_root

    path = cache_root() / "device_peaks.json"
    key = f"{_cpu_key()}|{dtype}"
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    if isinstance(cached.get(key), (int, float)):
        return float(cached[key])
    value = probe_matmul(dtype)
    if _busy():
        # Other processes share the cores: this probe reads low, and a cached low peak would
        # overstate every later MFU on this machine. Use it for this run only.
        return value
    cached[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cached, indent=1), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a read-only cache only costs a probe next time
    return value


def device_peak(device: Any, dtype: str) -> tuple[float, str]:
    """(peak FLOP/s, where it came from) for a torch device at "fp32" or "bf16"."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = gpu_table_peak(name, dtype)
        if peak:
            return peak, f"table:{name}"
        return probe_matmul(dtype, str(device)), f"probe:{name}"
    return cpu_peak(dtype), "probe:cpu"


def run_figures(model: Any, lengths: list[int], method: str, device: Any,
                mixed_precision: str) -> dict[str, Any]:
    """What the loop needs for MFU: FLOPs per token and the device peak (for run.json)."""
    dtype = "fp32" if mixed_precision == "no" else "bf16"  # fp16 runs at the bf16 rate
    peak, source = device_peak(device, dtype)
    return {"flops_per_token": model_flops_per_token(model, lengths, method),
            "peak_flops": peak, "peak_source": source, "peak_dtype": dtype}


def mfu(tokens_per_s: float, flops_per_token: float, peak: float) -> float | None:
    """Model-FLOPs utilisation (0..1), None without a peak."""
    if not peak or peak <= 0:
        return None
    return tokens_per_s * flops_per_token / peak
