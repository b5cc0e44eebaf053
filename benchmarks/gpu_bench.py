"""GPU training benchmark in one call: TRL's defaults vs `tuneloop train`, two model sizes.

    python benchmarks/gpu_bench.py                      # CUDA: ~5-8 minutes on an H100/H200
    python benchmarks/gpu_bench.py --device cpu --model TINY_DIR --shapes model,tiny --steps 2

For each shape (the embedded SmolLM2-135M weights, then a random-init Llama-3.2-1B-shaped model)
it runs benchmarks/train_throughput.py on the same seeded rows (the held-out-like length mix:
median 136, p95 ~792 tokens, batch 8, full fine-tuning): TRL's SFTTrainer at its SFTConfig
defaults, the shipped loop as users run it (precision auto = bf16 on the GPU, fused AdamW,
flash-attention 2 if installed else per-document varlen attention for the packed rows, gradient
checkpointing auto = only when memory needs it), and the same with torch.compile. Each run is a
fresh process; the table gives real tokens/s, MFU (train/flops.py: 6N + 12LHQT per token against
the device's bf16 peak from its table, or a matmul probe for an unknown device) and peak memory
(torch.cuda.max_memory_allocated; RSS on CPU). A time budget (default 540 s) skips what would not
fit and says so, so the whole call stays under 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHAPES = {  # name -> extra train_throughput.py arguments
    "model": [],  # the --model weights (embedded SmolLM2-135M by default)
    "smollm2-135m": ["--shape", "smollm2-135m"],  # its shape, random init (no weights needed)
    "llama-1b": ["--shape", "llama-1b"],
    "tiny": ["--shape", "tiny"],  # tests on CPU
}
# tuneloop rows per shape: the defaults, and on a GPU with torch.compile of the whole model (on a
# CPU compile is per region and its ~30 s compile would dominate the tiny test run).
VARIANTS = {"cuda": ["gc=auto", "gc=auto,compile=1"], "cpu": ["gc=auto"]}


def run_shape(args, shape: str, budget_s: float, out: Path) -> list[dict]:
    """One train_throughput.py call for `shape`; its per-row results (possibly partial)."""
    cmd = [sys.executable, str(HERE / "train_throughput.py"), "--device", args.device,
           "--model", args.model, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--lengths", "heldout", "--sides", "trl,tuneloop", "--json", str(out), "--quiet",
           *SHAPES[shape]]
    for v in VARIANTS[args.device]:
        cmd += ["--variant", v]
    print(f"== {shape}: {' '.join(cmd[2:])}", flush=True)
    try:
        subprocess.run(cmd, check=False, timeout=max(budget_s, 1))
    except subprocess.TimeoutExpired:
        print(f"   {shape}: stopped at the time budget; rows that finished are kept", flush=True)
    return json.loads(out.read_text()) if out.exists() else []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="model ref for the 'model' shape and the tokenizer of every shape")
    p.add_argument("--shapes", default="model,llama-1b", help=f"comma list of {sorted(SHAPES)}")
    p.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    p.add_argument("--warmup", type=int, default=3, help="untimed leading steps (compile)")
    p.add_argument("--budget", type=float, default=540.0, help="seconds for the whole call")
    p.add_argument("--json", type=Path, default=None, help="write every row here")
    args = p.parse_args(argv)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        p.error(f"--shapes: unknown {unknown}; use {sorted(SHAPES)}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is visible to torch "
                             "(use --device cpu to check the script)")
        print(f"device: {torch.cuda.get_device_name(0)}", flush=True)
    start = time.monotonic()
    rows: list[dict] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, shape in enumerate(shapes):
            left = args.budget - (time.monotonic() - start)
            if left < 30:
                skipped.append(shape)
                continue
            # Share what is left between this shape and the ones after it.
            share = left / (len(shapes) - k) if k < len(shapes) - 1 else left
            for r in run_shape(args, shape, share, Path(tmp) / f"{shape}.json"):
                rows.append({"shape": shape, **r})
    print_summary(rows)
    if skipped:
        print(f"SKIPPED (time budget {args.budget:.0f} s): {', '.join(skipped)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(f"total {time.monotonic() - start:.0f} s")
    return 0 if rows else 1


def print_summary(rows: list[dict]) -> None:
    """One line per row: shape, run, real tokens/s (x TRL), MFU, peak memory."""
    print(f"{'shape':<10} {'run':<44} {'real tok/s':>10} {'vs TRL':>7} {'MFU':>6} "
          f"{'peak MiB':>9}")
    for r in rows:
        ref = next((x for x in rows if x["shape"] == r["shape"] and x["name"] == "trl"), None)
        ratio = r["real_tokens_per_s"] / ref["real_tokens_per_s"] if ref else float("nan")
        print(f"{r['shape']:<10} {r['name'][:44]:<44} {r['real_tokens_per_s']:>10.1f} "
              f"{ratio:>6.2f}x {100 * r['mfu']:>5.1f}% {r['peak_mib']:>9.0f}")


if __name__ == "__main__":
    raise SystemExit(main())
