"""Benchmark: `tuneloop plan`'s estimate vs a measured training run, on three configs.

For each config (LoRA and full fine-tuning on the demo's short rows, and LoRA on long rows), two
fresh processes:

1. plan: `make_plan(config, probe_steps=P)` — the estimated peak memory (with the configured
   checkpointing) and the probe's seconds per step;
2. measure: `train(config, max_steps=N)` — peak RSS of the process (ru_maxrss) and the mean
   time of steps after the first (timed by the after_step hook).

Prints estimate, measurement and their ratio per config (target: within 25%). The machine is
shared, so step times are noisy; memory is not.

    .venv/bin/python benchmarks/plan_accuracy.py [--model smollm2-135m-instruct] [--steps 6]
        [--probe-steps 3] [--threads N] [--only lora,full,long] [--system-malloc]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "tuneloop" / "resources" / "demo"


def _long_rows(path: Path, n: int = 16) -> Path:
    """Rows of ~450 words (~600 tokens) each: the demo documents, cut into long answers."""
    words = " ".join((DEMO / f).read_text(encoding="utf-8") for f in
                     ("handbook.md", "faq.md", "meeting_notes.md")).split()
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            start = (i * 97) % max(1, len(words) - 450)
            text = " ".join(words[start:start + 450])
            fh.write(json.dumps({"messages": [
                {"role": "user", "content": f"Recite part {i} of the co-op documents."},
                {"role": "assistant", "content": text}]}) + "\n")
    return path


def configs(model: str, tmp: Path) -> dict[str, dict]:
    """The three configs (plain dicts, written as YAML by the children)."""
    short = str(DEMO / "train.jsonl")
    base = {"model": model, "logging": {"interval": 1, "report_to": [], "progress": False},
            "save": {"interval": 10_000}, "eval": {"at_start": False}}
    lora = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}
    return {
        "lora": {**base, "name": "lora", "method": "lora", "lora": lora,
                 "data": {"train": [short], "max_length": 128, "eval_fraction": 0.0},
                 "training": {"batch_size": 8, "learning_rate": 1e-3}},
        "full": {**base, "name": "full", "method": "full",
                 "data": {"train": [short], "max_length": 128, "eval_fraction": 0.0},
                 "training": {"batch_size": 8, "learning_rate": 1e-5}},
        "long": {**base, "name": "long", "method": "lora", "lora": lora,
                 "data": {"train": [str(_long_rows(tmp / "long.jsonl"))], "max_length": 1024,
                          "eval_fraction": 0.0},
                 "training": {"batch_size": 2, "learning_rate": 1e-3}},
    }


def child(mode: str, config_path: str, steps: int, out: str) -> None:
    """One measurement in this (fresh) process; writes JSON to `out`."""
    from tuneloop.train.config import load_config

    config = load_config(config_path)
    if mode == "plan":
        from tuneloop.train.plan import make_plan

        plan = make_plan(config, probe_steps=steps)
        key = "checkpointing on" if plan.configured_checkpointing else "checkpointing off"
        data = {"memory": plan.memory[key].to_json(), "tokens": plan.tokens_per_micro_batch,
                "seconds_per_step": plan.probe.seconds_per_step if plan.probe else None}
    else:
        from tuneloop.train.loop import TrainHooks, train
        from tuneloop.train.plan import peak_rss

        stamps: list[float] = []
        config.training.max_steps = steps
        with tempfile.TemporaryDirectory() as tmp:
            train(config, output_dir=Path(tmp) / "run", progress=False,
                  hooks=TrainHooks(after_step=lambda s: stamps.append(time.perf_counter())))
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        data = {"peak_rss": peak_rss(), "seconds_per_step": sum(gaps) / max(1, len(gaps))}
    Path(out).write_text(json.dumps(data), encoding="utf-8")


def main() -> None:
    """Run every config's plan and measurement in fresh processes and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--probe-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--only", default="lora,full,long")
    ap.add_argument("--system-malloc", action="store_true",
                    help="measure with glibc's malloc instead of jemalloc")
    ap.add_argument("--child", nargs=4, metavar=("MODE", "CONFIG", "STEPS", "OUT"))
    args = ap.parse_args()
    if args.child:
        mode, cfg, steps, out = args.child
        child(mode, cfg, int(steps), out)
        return
    import yaml

    from tuneloop import allocator

    # The training child runs with the malloc the `tuneloop` command gets (jemalloc where
    # installed): peak RSS depends on it. --system-malloc measures glibc's instead.
    env = dict(os.environ) if args.system_malloc else allocator.preload_env() or dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    print(f"{time.strftime('%Y-%m-%d')} {platform.machine()} {os.cpu_count()} CPUs, "
          f"model {args.model}, {args.steps} measured steps, probe {args.probe_steps} steps")
    print(f"{'config':6} {'tokens':>7} {'est MiB':>8} {'RSS MiB':>8} {'ratio':>6} "
          f"{'est s/step':>10} {'meas s/step':>11} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for name, cfg in configs(args.model, tmp).items():
            if name not in args.only.split(","):
                continue
            path = tmp / f"{name}.yaml"
            path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
            res = {}
            for mode, steps in (("plan", args.probe_steps), ("train", args.steps)):
                out = tmp / f"{name}-{mode}.json"
                subprocess.run([sys.executable, __file__, "--child", mode, str(path), str(steps),
                                str(out)], env=env, check=True)
                res[mode] = json.loads(out.read_text(encoding="utf-8"))
            est, meas = res["plan"]["memory"]["total"], res["train"]["peak_rss"]
            st, mt = res["plan"]["seconds_per_step"] or 0.0, res["train"]["seconds_per_step"]
            mb = 1024 ** 2
            print(f"{name:6} {res['plan']['tokens']:7d} {est / mb:8.0f} {meas / mb:8.0f} "
                  f"{est / meas:6.2f} {st:10.2f} {mt:11.2f} {st / mt if mt else 0:6.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
