"""The shipped loop on train_throughput's held-out-like rows at one token budget: real tokens/s
over the steps after the first (tokens counted as each step collates them), per-step MFU, peak
RSS; with `prof`, torch.profiler's table of where those steps' CPU time goes.

    python benchmarks/train_profile.py 1024 4          # budget (or none), steps
    python benchmarks/train_profile.py 1024 3 prof     # + the profiler table
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
import train_throughput as tt

from tuneloop import rundir
from tuneloop.models import load_tokenizer
from tuneloop.train import TrainConfig, TrainHooks, objectives, train
from tuneloop.train.fingerprint import rendered_hash
from tuneloop.train.objectives.base import PreparedData
from tuneloop.train.objectives.sft import SFTObjective

MODEL = "smollm2-135m-instruct"


class Example:
    def __init__(self, row):
        self.input_ids, self.labels = row["input_ids"], row["labels"]


def main() -> None:
    budget = None if sys.argv[1] == "none" else int(sys.argv[1])
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    profile = len(sys.argv) > 3 and sys.argv[3] == "prof"
    rows = tt.make_rows(load_tokenizer(MODEL), tt.BATCH_SIZE * steps, 0, "heldout")
    examples = [Example(r) for r in rows]
    tokens = [0]

    class RowsSFT(SFTObjective):
        def prepare_data(self, config, renderer):
            return PreparedData(train=examples, eval=[],
                                fingerprint={"id": rendered_hash(examples)})

        def collate(self, batch_examples):
            batch = super().collate(batch_examples)
            tokens[0] += batch.n_real_tokens
            return batch

    objectives.OBJECTIVES["sft"] = lambda config: RowsSFT()
    marks: list[tuple[float, int]] = []  # (time, real tokens so far) after each step
    prof = None
    if profile:
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                      schedule=torch.profiler.schedule(wait=1, warmup=0,
                                                                       active=steps - 1))
        prof.start()

    def after_step(step: int) -> None:
        marks.append((time.perf_counter(), tokens[0]))
        if prof:
            prof.step()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "unused.jsonl")  # the objective above supplies the rows
        data.write_text("")
        config = TrainConfig.model_validate({
            "name": "profile", "model": MODEL, "method": "full",
            "data": {"train": [str(data)], "eval_fraction": 0.0, "max_length": 1024},
            "training": {"max_steps": steps, "batch_size": tt.BATCH_SIZE, "learning_rate": tt.LR,
                         "precision": "fp32", "max_tokens_per_batch": budget},
            "eval": {"at_start": False},
            "logging": {"interval": 1, "report_to": [], "progress": False}})
        result = train(config, output_dir=Path(tmp) / "run",
                       hooks=TrainHooks(after_step=after_step))
        info = json.loads((result.run_dir / "run.json").read_text())
        mfu = [r.get("mfu") for r in rundir.read_metrics(result.run_dir) if r["kind"] == "train"]
    if prof:
        prof.stop()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=35))
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    print(f"budget {budget}: {(n1 - n0) / (t1 - t0):.1f} real tok/s over steps 2-{steps} "
          f"({n1 - n0} tokens); per-step MFU {[round(100 * m, 1) for m in mfu]} % "
          f"({info['flops_per_token'] / 1e9:.3f} GFLOP/token, peak "
          f"{info['peak_flops'] / 1e9:.0f} GFLOP/s); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
