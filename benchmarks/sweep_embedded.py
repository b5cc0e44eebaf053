"""A small `tuneloop sweep` on the embedded model: 6 LoRA trials on the shipped demo data.

    python benchmarks/sweep_embedded.py [--trials 6] [--max-steps 12] [--model REF] [--out DIR]

SmolLM2-135M-Instruct (the embedded model) is LoRA-tuned on the Marrowick demo rows shipped in
the package (387 rows, 10 % held out for the eval loss, max length 128); the search covers
training.learning_rate (log 1e-5..1e-2) and lora.r (8, 16, 32), metric eval_loss, with an eval
every 4 steps reported to the median pruner (2 completed trials before it prunes) and TPE
modelling from trial 4 on (3 random startup trials). Prints each trial as it ends, then the
best one and the wall time; the sweep directory holds sweep.json, best.yaml and report.html.
`--model DIR` runs the same sweep on another model (the tests pass the tiny one).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from importlib import resources
from pathlib import Path

import yaml

from tuneloop.sweep import SweepOptions, run_sweep
from tuneloop.sweep.params import format_values

PARAMS = ["training.learning_rate=log:1e-5..1e-2", "lora.r=8,16,32"]


def write_config(path: Path, model: str, max_steps: int) -> Path:
    """The trial config: LoRA on the shipped demo rows, evaluated every 4 steps."""
    data = Path(str(resources.files("tuneloop") / "resources" / "demo" / "train.jsonl"))
    path.write_text(yaml.safe_dump({
        "name": "sweep-bench",
        "model": model,
        "method": "lora",
        "data": {"train": [str(data)], "eval_fraction": 0.1, "max_length": 128},
        "lora": {"alpha": 32, "dropout": 0.0},
        "training": {"max_steps": max_steps, "batch_size": 4, "scheduler": "constant",
                     "warmup_steps": 0, "seed": 0, "precision": "fp32"},
        "eval": {"interval": 4, "batch_size": 8},
        "logging": {"interval": 4, "report_to": [], "progress": False},
    }), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="sweep directory (default: a new temporary one)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="sweep-bench-")) / "sweep"
    out.parent.mkdir(parents=True, exist_ok=True)
    config = write_config(out.parent / "sweep-bench.yaml", args.model, args.max_steps)
    started = time.time()
    result = run_sweep(config, PARAMS, metric="eval_loss", out=out, progress=False,
                       echo=lambda line: print(line, flush=True),
                       options=SweepOptions(trials=args.trials, seed=args.seed, startup_trials=3,
                                            prune_startup_trials=2))
    seconds = time.time() - started
    states = [t.state for t in result.trials]
    best = result.best
    print(f"{states.count('complete')} complete, {states.count('pruned')} pruned, "
          f"{states.count('failed')} failed in {seconds:.0f} s "
          f"({sum(t.steps or 0 for t in result.trials)} training steps in all)")
    print(f"best: trial {best.number}: eval loss {best.value:.4f} with "
          f"{format_values(best.params)}")
    print(f"sweep: {result.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
