"""DPO throughput: tuneloop's DPO objective in the shipped loop vs TRL's DPOTrainer at its defaults.

Both sides preference-tune the same model (same initial weights, same LoRA or full fine-tuning)
on the same seeded synthetic pairs (prompt, chosen, rejected as text; lengths drawn log-normal),
8 pairs per optimizer step (DPOConfig's per_device_train_batch_size default), the same learning
rate (DPOConfig's default), beta 0.1 and number of steps. tuneloop runs `tuneloop.train.train`
with `objective: dpo` on a JSONL file of the pairs (its own rendering, one packed padding-free
row per micro-batch, reference = adapter off for LoRA, precomputed before step 1 for full FT);
TRL runs DPOTrainer on the same rows (padded chosen/rejected batch; for LoRA the reference is the
adapter switched off, for full FT a second model copy it creates). Each side runs in its own
subprocess so its peak RSS is its own. "Real tokens/s" = non-pad tokens of the policy forward per
second, excluding the first --warmup step(s) (and so tuneloop's full-FT reference precompute).

    python benchmarks/dpo_throughput.py                      # CPU, embedded model, LoRA, 6 steps
    python benchmarks/dpo_throughput.py --steps 3 --pairs-len 40   # a quick smoke run
    python benchmarks/dpo_throughput.py --method full
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAIRS_PER_STEP = 8  # DPOConfig.per_device_train_batch_size default
BETA = 0.1
WORDS = ("the of and to in is you that it he was for on are as with his they at be this have "
         "from or one had by word but not what all were we when your can said there use an each "
         "which she do how their if will up other about out many then them these so some would "
         "make like into time has look two more write go see number way could people than first "
         "water been call who its now find long down day did get come made may part model data "
         "train answer question explain summary python function error value list table report")


def make_pairs(n: int, seed: int, mean_len: int) -> list[dict]:
    """n pairs; prompt and answers of log-normal word counts (answers around mean_len words)."""
    rng = random.Random(seed)
    words = WORDS.split()

    def text(mean: int) -> str:
        k = max(2, min(400, int(rng.lognormvariate(math.log(mean), 0.6))))
        return " ".join(rng.choice(words) for _ in range(k))

    return [{"prompt": f"Question {i}: {text(mean_len // 2)}?", "chosen": text(mean_len),
             "rejected": text(mean_len)} for i in range(n)]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")


def learning_rate() -> float:
    from trl import DPOConfig

    return DPOConfig.__dataclass_fields__["learning_rate"].default


def run_trl(args, pairs: list[dict], fp32: bool = False) -> dict:
    """TRL DPOTrainer with DPOConfig defaults, except what is needed to run here and measure
    (fp32: its bf16 default switched off, the fair reference on a CPU without native bf16,
    where bf16 autocast runs emulated matmuls two orders of magnitude slower)."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from tuneloop.models import load_model

    model, tok = load_model(args.model, device="cpu", dtype=torch.float32, trainable=True)
    stats: list[dict] = []
    tokens = {"real": 0}

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            stats.append({"t": time.perf_counter(), "cpu": time.process_time(),
                          "real": tokens["real"]})
            tokens["real"] = 0

    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(output_dir=out, max_steps=args.steps, logging_steps=1, beta=BETA,
                           report_to="none", save_strategy="no", use_cpu=True, seed=args.seed,
                           **({"bf16": False} if fp32 else {}))
        trainer = DPOTrainer(model=model, args=config, processing_class=tok,
                             train_dataset=Dataset.from_list(pairs),
                             peft_config=lora_config() if args.method == "lora" else None,
                             callbacks=[Timer()])
        inner = trainer.compute_loss

        def counting_loss(model, inputs, *a, **kw):
            # Counted where the step uses the batch: the dataloader may collate ahead of time.
            if model.training:
                tokens["real"] += int(inputs["attention_mask"].sum())
            return inner(model, inputs, *a, **kw)

        trainer.compute_loss = counting_loss
        trainer.train()
    return summarize("trl-fp32 DPOTrainer" if fp32 else "trl DPOTrainer", stats, args)


def run_tuneloop(args, pairs: list[dict]) -> dict:
    """The shipped loop with objective: dpo on the pairs as a JSONL file."""
    from tuneloop.train import TrainConfig, TrainHooks, objectives, train
    from tuneloop.train.objectives.dpo import DPOObjective

    tokens = {"real": 0}
    stats: list[dict] = []

    class Counting(DPOObjective):
        def collate(self, examples):
            batch = super().collate(examples)
            tokens["real"] += batch.n_real_tokens
            return batch

    objectives.OBJECTIVES["dpo"] = lambda config: Counting(config.dpo, method=config.method)

    def after_step(step: int) -> None:
        stats.append({"t": time.perf_counter(), "cpu": time.process_time(),
                      "real": tokens["real"]})
        tokens["real"] = 0

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pairs.jsonl"
        data.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
        config = TrainConfig.model_validate({
            "name": "bench", "model": args.model, "method": args.method, "objective": "dpo",
            "dpo": {"beta": BETA},
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
            "data": {"train": [str(data)], "eval_fraction": 0.0, "max_length": 1024},
            "training": {"max_steps": args.steps, "batch_size": PAIRS_PER_STEP,
                         "learning_rate": learning_rate(), "scheduler": "linear",
                         "warmup_steps": 0, "weight_decay": 0.0, "seed": args.seed,
                         "precision": "fp32", "gradient_checkpointing": "off"},
            "eval": {"at_start": False},
            "logging": {"interval": 1, "report_to": [], "progress": False},
        })
        train(config, output_dir=Path(tmp) / "run", progress=False,
              hooks=TrainHooks(after_step=after_step))
    return summarize("tuneloop dpo", stats, args)


def summarize(name: str, stats: list[dict], args) -> dict:
    w = min(args.warmup, len(stats) - 1)
    timed = stats[w:]
    seconds = stats[-1]["t"] - stats[w - 1]["t"] if w > 0 else float("nan")
    cpu_seconds = stats[-1]["cpu"] - stats[w - 1]["cpu"] if w > 0 else float("nan")
    real = sum(s["real"] for s in timed)
    return {"name": name, "real_tokens_per_s": real / seconds, "seconds": seconds,
            "real_tokens_per_cpu_s": real / cpu_seconds, "real_tokens": real,
            "timed_steps": len(timed), "peak_rss_mib": peak_rss_mib()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--method", choices=["lora", "full"], default="lora")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per side")
    p.add_argument("--warmup", type=int, default=1, help="leading steps excluded from timing")
    p.add_argument("--pairs-len", type=int, default=80, help="mean answer length in words")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sides", default="trl,tuneloop",
                   help="comma list: trl, trl-fp32 (DPOConfig defaults but bf16 off), tuneloop")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-data", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        pairs = json.loads(Path(args.child_data).read_text())
        if args.child in ("trl", "trl-fp32"):
            result = run_trl(args, pairs, fp32=args.child == "trl-fp32")
        else:
            result = run_tuneloop(args, pairs)
        Path(args.child_out).write_text(json.dumps(result))
        return
    pairs = make_pairs(args.steps * PAIRS_PER_STEP, args.seed, args.pairs_len)
    print(f"data: {len(pairs)} pairs, {args.steps} steps x {PAIRS_PER_STEP} pairs, first "
          f"{args.warmup} step(s) untimed; method {args.method}, beta {BETA}, "
          f"lr {learning_rate()}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pairs.json"
        data.write_text(json.dumps(pairs))
        for side in [s.strip() for s in args.sides.split(",") if s.strip()]:
            out = Path(tmp) / f"{side}.json"
            cmd = [sys.executable, __file__, "--child", side, "--child-data", str(data),
                   "--child-out", str(out), "--model", args.model, "--method", args.method,
                   "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--seed", str(args.seed)]
            done = subprocess.run(cmd, check=False)
            if done.returncode != 0 or not out.exists():
                print(f"  {side} failed (exit {done.returncode}); see above", flush=True)
                continue
            r = json.loads(out.read_text())
            results.append(r)
            print(f"  {r['name']}: {r['real_tokens_per_s']:.1f} real tok/s "
                  f"({r['real_tokens_per_cpu_s']:.1f}/CPU-s), peak RSS {r['peak_rss_mib']:.0f} "
                  f"MiB, {r['timed_steps']} timed steps", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    by = {r["name"].split()[0]: r for r in results}
    ref = "trl" if "trl" in by else "trl-fp32"  # TRL at its defaults when it ran
    if ref in by and "tuneloop" in by and by[ref]["real_tokens_per_s"] > 0:
        a, b = by["tuneloop"], by[ref]
        print(f"ratio tuneloop/{ref}: {a['real_tokens_per_s'] / b['real_tokens_per_s']:.2f}x "
              f"real tok/s ({a['real_tokens_per_cpu_s'] / b['real_tokens_per_cpu_s']:.2f}x per "
              f"CPU-s), peak RSS {a['peak_rss_mib'] / b['peak_rss_mib']:.2f}x (target >= 1.5x "
              "tok/s on the 2-core CPU)")


if __name__ == "__main__":
    main()
