"""The shipped loop on train_throughput's held-out-like rows at one token budget: tok/s after
the first step, per-step MFU, peak RSS; with `prof`, torch.profiler's table of where a step's
CPU time goes (steps after the first).

    python benchmarks/train_profile.py 1024 4          # budget (or none), steps
    python benchmarks/train_profile.py 1024 3 prof     # + the profiler table
"""
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import torch
import train_throughput as tt

from tuneloop.models import load_tokenizer
from tuneloop.train import TrainConfig, TrainHooks, objectives, train
from tuneloop.train.fingerprint import rendered_hash
from tuneloop.train.objectives.base import PreparedData
from tuneloop.train.objectives.sft import SFTObjective

budget = None if sys.argv[1] == "none" else int(sys.argv[1])
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 4
profile = len(sys.argv) > 3 and sys.argv[3] == "prof"
tok = load_tokenizer("smollm2-135m-instruct")
rows = tt.make_rows(tok, 8 * steps, 0, "heldout")

class Ex:
    def __init__(s, r): s.input_ids, s.labels = r["input_ids"], r["labels"]
ex = [Ex(r) for r in rows]
class RowsSFT(SFTObjective):
    def prepare_data(self, config, renderer):
        return PreparedData(train=ex, eval=[], fingerprint={"id": rendered_hash(ex)})
objectives.OBJECTIVES["sft"] = lambda c: RowsSFT()
times = []
prof = None
if profile:
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                  schedule=torch.profiler.schedule(wait=1, warmup=0, active=steps - 1))
    prof.start()
def after(step):
    times.append(time.perf_counter())
    if prof: prof.step()
with tempfile.TemporaryDirectory() as tmp:
    Path(tmp, "d.jsonl").write_text("")
    cfg = TrainConfig.model_validate({"name": "p", "model": "smollm2-135m-instruct", "method": "full",
        "data": {"train": [str(Path(tmp, "d.jsonl"))], "eval_fraction": 0.0, "max_length": 1024},
        "training": {"max_steps": steps, "batch_size": 8, "learning_rate": 2e-5, "precision": "fp32",
                     "max_tokens_per_batch": budget},
        "eval": {"at_start": False}, "logging": {"interval": 1, "report_to": [], "progress": False}})
    t0 = time.perf_counter()
    res = train(cfg, output_dir=Path(tmp) / "run", hooks=TrainHooks(after_step=after))
    info = json.loads((res.run_dir / "run.json").read_text())
    m = [r for r in __import__("tuneloop.rundir", fromlist=["x"]).read_metrics(res.run_dir) if r["kind"] == "train"]
if prof:
    prof.stop()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=35))
tokens = sum(len(r["input_ids"]) for r in rows)
import itertools
import resource

print("budget", budget, "tokens", tokens, "step times", [round(b - a, 2) for a, b in itertools.pairwise(times)])
print("tok/s after step1:", sum(len(r["input_ids"]) for r in rows[8:]) / (times[-1] - times[0]))
print("mfu rows", [r.get("mfu") for r in m], "flops/token", info["flops_per_token"], "peak", info.get("peak_flops"))
print("peak rss MiB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
