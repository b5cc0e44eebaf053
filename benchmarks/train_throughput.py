"""Training throughput: tuneloop's shipped training loop vs TRL's SFTTrainer at its defaults.

The tuneloop side is `tuneloop.train.train` itself (the SFT objective's packing and loss, its
optimizer groups, schedule, precision and accumulation), so a slowdown of the real trainer shows
here; only its data step is handed the benchmark's pre-tokenized rows. Both sides fine-tune the same model (same initial weights) on the same pre-tokenized synthetic
instruction rows (total lengths drawn log-normal, clipped to 20-1000 tokens, seeded), with the same
examples per optimizer step (8), optimizer (fused AdamW), learning rate, schedule and number of
steps. Each side runs in its own subprocess so peak memory (RSS on CPU,
torch.cuda.max_memory_allocated on GPU) is its own. "Real tokens/s" = non-pad tokens processed per
second of training, excluding the first --warmup step(s) of both sides.

    python benchmarks/train_throughput.py                    # CPU, embedded model, full FT
    python benchmarks/train_throughput.py --device cuda --shape llama-1b --steps 30
    python benchmarks/train_throughput.py --sides tuneloop --variant attn=sdpa --variant gc=1
    python benchmarks/train_throughput.py --lengths heldout --variant bf16=0 --variant bf16=1

--lengths heldout draws lengths like the held-out chat rows of issue 16 (Self-Instruct + MT-Bench
answers: median 136, p95 ~792 tokens, capped at 1024) instead of the default instruction mix.
Each row also gets its MFU (model FLOPs per token from train/flops.py x real tokens/s / the
device's peak at that row's precision: the cached matmul probe on a CPU) and "% of ceiling"
against the fp32 and bf16 probe peaks; peak memory is the child's ru_maxrss (CPU).

A --variant is a comma-separated list of tuneloop settings (attn=varlen|sdpa, gc=0|1|auto =
training.gradient_checkpointing, bf16=0|1|auto = training.precision fp32|bf16|auto (bf16 on a
CPU needs native bf16 kernels), max_tokens=auto|none|N = training.max_tokens_per_batch
(auto: the shipped default), compile=0|1, threads=N, alloc=auto|system: the malloc, auto =
jemalloc where installed, as the `tuneloop` command runs); each variant is one more tuneloop row.
TRL rows run with the system malloc, as TRL's users run it; each row reports the one it had.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH_SIZE = 8  # TRL's per_device_train_batch_size default: examples per optimizer step
LR = 2e-5  # TRL's SFTConfig default learning rate
MAX_GRAD_NORM = 1.0  # transformers' TrainingArguments default

# What the shipped loop does by default (docs/benchmarks.md): per-document attention, no activation
# checkpointing, training.precision auto (bf16 on a GPU or a CPU with native bf16, else fp32).
CPU_DEFAULTS = {"attn": "varlen", "gc": 0, "bf16": "auto", "max_tokens": "auto",
                "compile": 0, "threads": 0, "alloc": "auto"}
CUDA_DEFAULTS = {"attn": "auto", "gc": 0, "bf16": "auto", "max_tokens": "auto",
                 "compile": 0, "threads": 0, "alloc": "auto"}
LENGTHS = {  # (median, log-normal sigma, min, max) of a row's total tokens
    "instruct": (180, 0.9, 20, 1000),
    "heldout": (136, 1.07, 20, 1024),  # p95 = 136 * e^(1.645 * 1.07) ~ 792
}

WORDS = (  # split in make_rows
    "the of and to in is you that it he was for on are as with his they at be this have from or "
    "one had by word but not what all were we when your can said there use an each which she do "
    "how their if will up other about out many then them these so some her would make like him "
    "into time has look two more write go see number no way could people my than first water been "
    "call who oil its now find long down day did get come made may part model data train answer "
    "question explain summary python function error value list table report meeting customer"
)


# ------------------------------------------------------------------------------------------------
# Data: one seeded set of rendered rows shared by both sides


def make_rows(tokenizer, n: int, seed: int, lengths: str = "instruct") -> list[dict]:
    """n chat rows rendered with the model's template; total token lengths log-normal (LENGTHS)."""
    median, sigma, low, high = LENGTHS[lengths]
    rng = random.Random(seed)
    stream = tokenizer(" ".join(rng.choice(WORDS.split()) for _ in range(60_000)),
                       add_special_tokens=False)["input_ids"]
    empty = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
    overhead = len(_render(tokenizer, empty)[0])
    rows = []
    for _ in range(n):
        # Median ~180 tokens with a long tail, like instruction data (e.g. Alpaca/Dolly mixes).
        target = int(min(high, max(low, rng.lognormvariate(math.log(median), sigma))))
        body = max(2, target - overhead)
        n_prompt = max(1, int(body * rng.uniform(0.2, 0.6)))
        n_answer = max(1, body - n_prompt)
        start = rng.randrange(len(stream) - body - 1)
        prompt = tokenizer.decode(stream[start:start + n_prompt]).strip()
        answer = tokenizer.decode(stream[start + n_prompt:start + n_prompt + n_answer]).strip()
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        ids, labels = _render(tokenizer, messages)
        # Re-tokenising decoded text can shift a length by a token or two; keep the cap exact.
        rows.append({"input_ids": ids[:high], "labels": labels[:high]})
    return rows


def _render(tokenizer, messages):
    """Token ids and assistant-only labels (prompt masked with -100, answer + end-of-turn trained)."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    return ids, [-100] * n_prompt + ids[n_prompt:]


# ------------------------------------------------------------------------------------------------
# Model


def load(args, device: str):
    """(model, tokenizer): the real model ref, or a random-init shape (GPU scaling runs)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    from tuneloop.models import ensure_embedded_model, load_model, load_tokenizer

    if args.shape is None:
        model, tok = load_model(args.model, device=device, dtype=torch.float32, trainable=True)
    else:
        tok = load_tokenizer(args.model)
        if args.shape == "smollm2-135m":
            # --model may be a directory with the config and tokenizer but no weights (what
            # travels to a GPU machine that cannot install the embedded model).
            has_config = (Path(args.model) / "config.json").is_file()
            config = AutoConfig.from_pretrained(
                args.model if has_config else ensure_embedded_model(progress=False))
        elif args.shape == "tiny":  # tests: a 2-layer Llama sized for the tokenizer
            config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                 num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, max_position_embeddings=2048,
                                 tie_word_embeddings=True)
        else:  # llama-1b: the Llama-3.2-1B shape
            config = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                                 num_hidden_layers=16, num_attention_heads=32,
                                 num_key_value_heads=8, max_position_embeddings=4096,
                                 rope_theta=500000.0, tie_word_embeddings=True)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(device)
        model.train()
    if args.method == "lora":
        from peft import get_peft_model

        model = get_peft_model(model, lora_config())
    return model, tok


def lora_config():
    """The LoRA both sides use with --method lora."""
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")


def peak_memory_mib(device: str) -> float:
    """Peak RSS of this process (CPU) or peak CUDA memory allocated, in MiB."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ------------------------------------------------------------------------------------------------
# The two sides (each runs in a child process)


def run_trl(args, rows, device: str, fp32: bool = False) -> dict:
    """TRL SFTTrainer with SFTConfig defaults, except what is needed to run here and measure
    (fp32: its bf16 default switched off, the fair reference on a CPU without native bf16,
    where TRL's default bf16 autocast runs emulated matmuls two orders of magnitude slower)."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    model, tok = load(args, device)
    if args.method == "lora":
        model = model.get_base_model()  # TRL wraps it itself from peft_config
    stats: list[dict] = []

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            stats[state.global_step - 1].update(t=time.perf_counter(), cpu=time.process_time())

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs and state.global_step:
                stats[state.global_step - 1]["loss"] = logs["loss"]

    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(output_dir=out, max_steps=args.steps, logging_steps=1,
                           report_to="none", save_strategy="no", max_length=1024,
                           use_cpu=device == "cpu", seed=args.seed,
                           **({"bf16": False} if fp32 else {}))
        trainer = SFTTrainer(model=model, args=config, processing_class=tok,
                             train_dataset=Dataset.from_list(rows),
                             peft_config=lora_config() if args.method == "lora" else None,
                             callbacks=[Timer()])
        inner = trainer.data_collator

        def counting_collator(examples):
            # Count what the model really processes: real (attention_mask) vs padded positions.
            batch = inner(examples)
            mask = batch.get("attention_mask")
            n_pos = batch["input_ids"].numel()
            stats.append({"real": int(mask.sum()) if mask is not None else n_pos, "total": n_pos})
            return batch

        trainer.data_collator = counting_collator
        trainer.train()
    extra = {"bf16": config.bf16, "gradient_checkpointing": config.gradient_checkpointing,
             "dtype": "bf16" if config.bf16 else "fp32",
             "flops_per_token": _flops_per_token(model, rows, args.method),
             "optim": str(config.optim), "padding_free": config.padding_free,
             "packing": config.packing}
    return summarize("trl fp32" if fp32 else "trl", stats[: args.steps], args, device, extra)


def run_tuneloop(args, rows, device: str, variant: dict) -> dict:
    """The shipped loop (tuneloop.train.train): its SFT objective, optimizer groups, schedule,
    precision and accumulation. Only the data step differs: the SFT objective's prepare_data is
    given the benchmark's pre-tokenized rows, so both sides train on exactly the same tokens."""
    import torch

    from tuneloop import rundir
    from tuneloop.train import TrainConfig, TrainHooks, objectives, train
    from tuneloop.train.collate import enable_packed_attention
    from tuneloop.train.fingerprint import rendered_hash
    from tuneloop.train.objectives.base import PreparedData
    from tuneloop.train.objectives.sft import SFTObjective

    if variant["threads"]:
        torch.set_num_threads(int(variant["threads"]))

    class Ex:
        __slots__ = ("input_ids", "labels")

        def __init__(self, row):
            self.input_ids, self.labels = row["input_ids"], row["labels"]

    examples = [Ex(r) for r in rows]
    counts = {"real": 0, "total": 0}
    attention: list[str] = []

    class RowsSFT(SFTObjective):
        """The shipped SFT objective on the benchmark's rows (same collate, loss, setup)."""

        def prepare_data(self, config, renderer):
            return PreparedData(train=examples, eval=[],
                                fingerprint={"id": rendered_hash(examples)})

        def setup(self, model, data, ctx):
            # "auto": flash-attention 2 on CUDA when installed, else tuneloop's per-document varlen
            attention.append(enable_packed_attention(
                model, None if variant["attn"] == "auto" else _attn_name(variant["attn"])))

        def collate(self, batch_examples):
            batch = super().collate(batch_examples)
            counts["real"] += batch.n_real_tokens
            counts["total"] += batch.n_positions
            return batch

    objectives.OBJECTIVES["sft"] = lambda config: RowsSFT()
    stats: list[dict] = []

    def after_step(step: int) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        stats.append({"real": counts["real"], "total": counts["total"], "t": time.perf_counter(),
                      "cpu": time.process_time()})
        counts["real"] = counts["total"] = 0

    with tempfile.TemporaryDirectory() as tmp:
        model_ref = args.model if args.shape is None else save_shape(args, Path(tmp) / "init")
        config = TrainConfig.model_validate({
            "name": "bench", "model": model_ref, "method": args.method,
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
            "data": {"train": [args.child_data], "eval_fraction": 0.0, "max_length": 1024},
            # transformers' defaults as TRL runs them: linear decay to 0, no warmup, no decay
            "training": {"max_steps": args.steps, "batch_size": BATCH_SIZE, "learning_rate": LR,
                         "scheduler": "linear", "warmup_steps": 0, "weight_decay": 0.0,
                         "max_grad_norm": MAX_GRAD_NORM, "seed": args.seed,
                         "precision": _precision(variant["bf16"]),
                         "gradient_checkpointing": {"auto": "auto", "0": "off", "1": "on"}[
                             str(variant["gc"])],
                         "max_tokens_per_batch": _token_budget(variant["max_tokens"]),
                         "compile": bool(variant["compile"])},
            "eval": {"at_start": False},
            "logging": {"interval": 1, "report_to": [], "progress": not args.quiet},
        })
        result = train(config, output_dir=Path(tmp) / "run", hooks=TrainHooks(after_step=after_step))
        losses = [r["loss"] for r in rundir.read_metrics(result.run_dir) if r["kind"] == "train"]
        info = json.loads((result.run_dir / "run.json").read_text())
    for row, loss in zip(stats, losses, strict=False):
        row["loss"] = loss
    extra = {**variant, "attention": attention[0] if attention else "?",
             "flops_per_token": info["flops_per_token"], "dtype": info["peak_dtype"],
             "loop_mfu": info.get("mfu")}
    return summarize("tuneloop " + variant_label(variant), stats, args, device, extra)


def _precision(value) -> str:
    return {"auto": "auto", "0": "fp32", "1": "bf16"}[str(value)]


def _flops_per_token(model, rows, method: str) -> float:
    """The same count the loop logs (train/flops.py), for the same rows."""
    from tuneloop.train.flops import model_flops_per_token

    return model_flops_per_token(model, [len(r["input_ids"]) for r in rows], method)


def save_shape(args, out: Path) -> str:
    """A random-init model of --shape saved as a local model dir (the loop loads by reference)."""
    model, tok = load(args, "cpu")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def _attn_name(short: str) -> str:
    return {"varlen": "tuneloop_varlen", "sdpa": "sdpa"}.get(short, short)


def summarize(name: str, stats: list[dict], args, device: str, extra: dict) -> dict:
    """Real tokens/s over the steps after the warm-up, plus peak memory and real-token share."""
    w = min(args.warmup, len(stats) - 1)
    timed = stats[w:]
    seconds = stats[-1]["t"] - stats[w - 1]["t"] if w > 0 else float("nan")
    # Process CPU seconds (all threads): a proxy that other jobs on a shared CPU disturb less.
    cpu_seconds = stats[-1]["cpu"] - stats[w - 1]["cpu"] if w > 0 else float("nan")
    real = sum(s["real"] for s in timed)
    total = sum(s["total"] for s in timed)
    return {"name": name, "real_tokens_per_s": real / seconds, "seconds": seconds,
            "real_tokens_per_cpu_s": real / cpu_seconds, "cpu_seconds": cpu_seconds,
            "timed_steps": len(timed), "real_tokens": real, "real_share": real / total,
            "peak_mib": peak_memory_mib(device),
            "losses": [round(s.get("loss", float("nan")), 4) for s in stats], **extra}


def _token_budget(value) -> int | str | None:
    """A variant's max_tokens as training.max_tokens_per_batch (auto, none or a number)."""
    return None if value in ("none", 0) else value


def child_env(side: str, variant: dict | None) -> dict:
    """The side's malloc: tuneloop rows get what the `tuneloop` command re-executes with
    (jemalloc where installed, tuneloop/allocator.py; alloc=system keeps glibc's), TRL rows the
    system's, as its users run it."""
    from tuneloop import allocator

    env = dict(os.environ)
    if side == "tuneloop" and variant and variant.get("alloc") != "system":
        env = allocator.preload_env(env) or env
    return env


def variant_label(v: dict) -> str:
    """Short, stable description of a tuneloop variant."""
    parts = [f"attn={v['attn']}", f"gc={v['gc']}", f"bf16={v['bf16']}"]
    parts += [f"max_tokens={v['max_tokens']}"]
    parts += [f"{k}={v[k]}" for k in ("compile", "threads") if v[k]]
    parts += [f"alloc={v['alloc']}"] if v["alloc"] != "auto" else []
    return ",".join(parts)


# ------------------------------------------------------------------------------------------------
# Driver


def parse_variant(text: str, device: str) -> dict:
    """'attn=sdpa,gc=1' → the device defaults with those keys overridden."""
    v = dict(CUDA_DEFAULTS if device == "cuda" else CPU_DEFAULTS)
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in v:
            raise SystemExit(f"--variant: unknown key {key!r}; use one of {sorted(v)}")
        auto = key in ("bf16", "gc", "max_tokens") and value == "auto"
        keep = key in ("attn", "alloc") or auto or (key == "max_tokens" and value == "none")
        v[key] = value if keep else int(value)
    if v["bf16"] == 1 and device != "cuda":
        from tuneloop.train.setup import cpu_native_bf16

        if not cpu_native_bf16():
            raise SystemExit("--variant bf16=1: this CPU has no native bf16 (oneDNN reports "
                             "none), so training.precision: bf16 is refused; use bf16=0 or auto")
    return v


def child(args) -> None:
    """Run one side, write its result JSON."""
    rows = json.loads(Path(args.child_data).read_text())
    device = args.device
    profile = os.environ.get("TRAIN_THROUGHPUT_PROFILE")  # where the time of a side goes
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    if args.child in ("trl", "trl-fp32"):
        result = run_trl(args, rows, device, fp32=args.child == "trl-fp32")
    else:
        result = run_tuneloop(args, rows, device, json.loads(args.child_variant))
    if profile:
        import pstats

        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats(profile if profile in ("tottime", "cumulative") else "tottime")
        stats.print_stats(30)
    from tuneloop import allocator

    result["allocator"] = allocator.active()
    Path(args.child_out).write_text(json.dumps(result))


def main() -> None:
    """Build the data once, run each side in a fresh process, print the table and the ratio."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--model", default="smollm2-135m-instruct", help="model ref (tokenizer too)")
    p.add_argument("--steps", type=int, default=5, help="optimizer steps per side")
    p.add_argument("--warmup", type=int, default=1, help="leading steps excluded from timing")
    p.add_argument("--method", choices=["full", "lora"], default="full")
    p.add_argument("--shape", choices=["smollm2-135m", "llama-1b", "tiny"], default=None,
                   help="random init from this config instead of --model weights (GPU scaling)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lengths", choices=sorted(LENGTHS), default="instruct",
                   help="row length distribution (heldout: issue 16's held-out-like rows)")
    p.add_argument("--sides", default="trl,tuneloop",
                   help="comma list: trl, trl-fp32 (TRL defaults but bf16 off), tuneloop")
    p.add_argument("--variant", action="append", default=None,
                   help="tuneloop settings, e.g. attn=sdpa,gc=1 (repeatable)")
    p.add_argument("--json", type=Path, default=None, help="also write all results here")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-data", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    p.add_argument("--child-variant", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is visible to torch")

    from tuneloop.models import load_tokenizer

    tok = load_tokenizer(args.model)
    rows = make_rows(tok, args.steps * BATCH_SIZE, args.seed, args.lengths)
    lengths = sorted(len(r["input_ids"]) for r in rows)
    print(f"data: {len(rows)} rows, lengths min {lengths[0]} median {lengths[len(rows) // 2]} "
          f"mean {sum(lengths) / len(rows):.0f} max {lengths[-1]}; {args.steps} steps x "
          f"{BATCH_SIZE} examples, first {args.warmup} step(s) untimed; device {args.device}, "
          f"method {args.method}, torch threads {os.cpu_count()} cpus", flush=True)
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    jobs: list[tuple[str, dict | None]] = []
    jobs += [(side, None) for side in ("trl", "trl-fp32") if side in sides]
    if "tuneloop" in sides:
        for text in args.variant or [""]:
            jobs.append(("tuneloop", parse_variant(text, args.device)))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.json"
        data.write_text(json.dumps(rows))
        for k, (side, variant) in enumerate(jobs):
            out = Path(tmp) / f"result-{k}.json"
            cmd = [sys.executable, __file__, "--child", side, "--child-data", str(data),
                   "--child-out", str(out), "--child-variant", json.dumps(variant),
                   "--device", args.device, "--model", args.model, "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--method", args.method,
                   "--seed", str(args.seed)] + (["--shape", args.shape] if args.shape else [])
            cmd += ["--quiet"] if args.quiet else []
            done = subprocess.run(cmd, env=child_env(side, variant), check=False)
            if done.returncode != 0 or not out.exists():
                # Keep what finished: one failed (or interrupted) row must not lose the others.
                print(f"  {side} {variant or ''} failed (exit {done.returncode}); see above",
                      flush=True)
                continue
            results.append(json.loads(out.read_text()))
            r = results[-1]
            add_utilisation(r, args.device)
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
            print(f"  {r['name']}: {r['real_tokens_per_s']:.1f} real tok/s "
                  f"MFU {100 * r['mfu']:.1f}% ({r['dtype']}), "
                  f"({r['real_tokens_per_cpu_s']:.1f}/CPU-s), "
                  f"peak {r['peak_mib']:.0f} MiB ({r['allocator']} malloc), "
                  f"losses {r['losses']}", flush=True)
    if not results:
        raise SystemExit("no run finished")
    print_table(results)


def _pct(value: float | None) -> str:
    return f"{100 * value:.1f}%" if value is not None else "-"


def add_utilisation(r: dict, device: str) -> None:
    """MFU at the row's precision, and the share of the fp32 / bf16 ceilings (peak / FLOPs per
    token) that the row's real tokens/s reach; peaks from train/flops.py (probe, cached)."""
    from tuneloop.train.flops import device_peak
    from tuneloop.train.setup import cpu_native_bf16

    dev = "cuda" if device == "cuda" else "cpu"
    peaks = {"fp32": device_peak(dev, "fp32")[0]}
    if dev == "cuda" or cpu_native_bf16():  # an emulated bf16 probe would take minutes
        peaks["bf16"] = device_peak(dev, "bf16")[0]
    achieved = r["real_tokens_per_s"] * r["flops_per_token"]
    r["peak_flops"] = peaks
    r["mfu"] = achieved / peaks.get(r["dtype"], peaks["fp32"])
    for dtype in ("fp32", "bf16"):
        r[f"pct_{dtype}_ceiling"] = achieved / peaks[dtype] if dtype in peaks else None


def print_table(results: list[dict]) -> None:
    """The comparison table and the final ratio line (tuneloop's fastest row vs TRL)."""
    from rich.console import Console
    from rich.table import Table

    # The reference: TRL at its defaults when it ran, else TRL with bf16 off.
    ref = next((r for r in results if r["name"] == "trl"), None) or next(
        (r for r in results if r["name"] == "trl fp32"), None)
    table = Table(title="training throughput (real tokens/s, after warm-up)")
    cols = ("run", "real tok/s", "vs TRL", "tok/CPU-s", "vs TRL (CPU)", "real-token share",
            "MFU", "% fp32 ceil", "% bf16 ceil", "peak MiB", "timed s")
    for col in cols:
        table.add_column(col, justify="left" if col == "run" else "right", no_wrap=True)
    for r in results:
        ratio = r["real_tokens_per_s"] / ref["real_tokens_per_s"] if ref else float("nan")
        cratio = (r["real_tokens_per_cpu_s"] / ref["real_tokens_per_cpu_s"]) if ref else math.nan
        table.add_row(r["name"], f"{r['real_tokens_per_s']:.1f}", f"{ratio:.2f}x",
                      f"{r['real_tokens_per_cpu_s']:.1f}", f"{cratio:.2f}x",
                      f"{100 * r['real_share']:.1f}%", f"{100 * r['mfu']:.1f}%",
                      _pct(r.get("pct_fp32_ceiling")), _pct(r.get("pct_bf16_ceiling")),
                      f"{r['peak_mib']:.0f}", f"{r['seconds']:.1f}")
    Console(width=150).print(table)  # full width even when piped to a log
    ours = max((r for r in results if not r["name"].startswith("trl")), default=None,
               key=lambda r: r["real_tokens_per_s"])
    if ours:
        for dtype, peak in ours["peak_flops"].items():
            print(f"CEILING {dtype}: {peak / 1e9:.0f} GFLOP/s matmul peak (probe) / "
                  f"{ours['flops_per_token'] / 1e9:.3f} GFLOP per token = "
                  f"{peak / ours['flops_per_token']:.0f} real tokens/s")
    if ref and ours:
        print(f"RATIO tuneloop ({ours['name'].removeprefix('tuneloop ')})/{ref['name']} "
              f"real tokens/s = "
              f"{ours['real_tokens_per_s'] / ref['real_tokens_per_s']:.2f}x "
              f"({ours['real_tokens_per_s']:.1f} vs {ref['real_tokens_per_s']:.1f}); "
              f"real-token share {100 * ours['real_share']:.1f}% vs {100 * ref['real_share']:.1f}%; "
              f"per CPU-second {ours['real_tokens_per_cpu_s'] / ref['real_tokens_per_cpu_s']:.2f}x")


if __name__ == "__main__":
    main()
