"""Writers for two realistic run dirs and a compare dir, written in the documented on-disk formats.

The formats are those of docs/architecture.md (run dir layout) and docs/eval.md (compare.json,
<variant>/cases.jsonl + summary.json). Outputs carry XSS payloads (R22).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

SCRIPT_PAYLOAD = "<script>window.__xss=1</script>"
IMG_PAYLOAD = '<img src=x onerror="window.__xss=1">'

# (case id, prompt, {variant: (output, pass)}) — the "tuned" variant is also the run's own suite.
CASES = [
    ("capital-fr", "What is the capital of France?",
     {"base": ("Paris is the capital.", True), "base+prompt": ("Paris.", True),
      "tuned": ("Paris.", True)}),
    ("json-object", "Reply with a JSON object with key ok.",
     {"base": ("Sure! ok: true", False), "base+prompt": ('{"ok": true}', True),
      "tuned": ('{"ok": true}', True)}),
    ("xss-script", "Echo this HTML back verbatim.",
     {"base": (f"Here it is: {SCRIPT_PAYLOAD}", False), "base+prompt": (SCRIPT_PAYLOAD, False),
      "tuned": (SCRIPT_PAYLOAD, True)}),
    ("xss-img", f"Describe {IMG_PAYLOAD}",
     {"base": (IMG_PAYLOAD, False), "base+prompt": (IMG_PAYLOAD, False),
      "tuned": ("an image tag", False)}),
]
# capital-fr never flips; json-object, xss-script flip; xss-img fails everywhere.
EXPECTED_FLIPPED = 2


@dataclass
class FakeWorkspace:
    """Paths of the written fixtures."""

    run_a: Path
    run_b: Path
    compare: Path


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_run(root: Path, name: str, *, method: str, lr: float, floor: float, steps: int = 50,
              suite_rates: tuple[float, float] = (0.5, 0.75)) -> Path:
    """A finished run dir: config.yaml, data/fingerprint.json, metrics.jsonl, run.json, evals/."""
    run = root / name
    (run / "data").mkdir(parents=True)
    config = {
        "model": "smollm2-135m-instruct",
        "method": method,
        "data": {"train": ["data/train.jsonl"], "max_length": 256},
        "train": {"lr": lr, "epochs": 2, "batch_size": 8, "seed": 0},
    }
    if method == "lora":
        config["lora"] = {"r": 8, "alpha": 16, "dropout": 0.05}
    (run / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    fp_id = ("a1b2c3d4e5f6" if method == "lora" else "0f9e8d7c6b5a") + "0" * 52
    (run / "data" / "fingerprint.json").write_text(json.dumps({
        "id": fp_id,
        "files": [{"path": "data/train.jsonl", "sha256": "5" * 64, "rows": 120}],
        "train_examples": 108, "eval_examples": 12,
        "train_rendered_sha256": "6" * 64, "eval_rendered_sha256": "7" * 64,
        "dropped": {"answer_cut_by_max_length": 2},
    }))
    rows = []
    for step in range(5, steps + 1, 5):
        loss = floor + 2.0 * math.exp(-step / 15)
        rows.append({"step": step, "kind": "train", "loss": loss, "lr": lr,
                     "grad_norm": 1.0 + 0.01 * step, "tokens_per_s": 230.0})
        if step % 25 == 0:
            ev = loss + 0.15
            rows.append({"step": step, "kind": "eval", "eval_loss": ev,
                         "perplexity": math.exp(ev)})
            rate = suite_rates[step // 25 - 1]
            rows.append({"step": step, "kind": "suite", "suite": "suites/smoke.yaml",
                         "pass_rate": rate})
    _write_jsonl(run / "metrics.jsonl", rows)
    best = min(r["eval_loss"] for r in rows if r["kind"] == "eval")
    # run.json and the suite outputs as tuneloop.train.loop / tuneloop.eval.suite_run write them.
    (run / "run.json").write_text(json.dumps({
        "name": name, "status": "completed", "model": "smollm2-135m-instruct", "method": method,
        "data_fingerprint": fp_id, "steps": steps, "best_eval_loss": best,
        "best_checkpoint": f"step-{steps:06d}", "seconds": 42.0,
    }))
    suite = run / "evals" / "smoke-20261126-070000" / "tuned"
    cases = [{"id": cid, "output": by_v["tuned"][0], "passed": by_v["tuned"][1],
              "checks": [{"name": "contains", "passed": by_v["tuned"][1],
                          "detail": "" if by_v["tuned"][1] else "expected text not found",
                          "needs_judge": False}],
              "tags": [], "n_words": 2, "weight": 1.0, "needs_judge": False, "n_tokens": 4,
              "finish_reason": "stop", "prompt": [{"role": "user", "content": prompt}]}
             for cid, prompt, by_v in CASES]
    if method == "full":  # the second run answers json-object wrongly: a flip between runs too
        cases[1] = dict(cases[1], output="ok", passed=False)
    _write_jsonl(suite / "cases.jsonl", cases)
    passed = sum(c["passed"] for c in cases)
    (suite / "summary.json").write_text(json.dumps({
        "suite": "smoke", "variant": "tuned", "model_ref": str(run), "n": len(cases),
        "n_passed": passed, "pass_rate": passed / len(cases), "score": passed / len(cases),
        "threshold": 0.5, "passed": passed / len(cases) >= 0.5,
    }))
    return run


def write_compare(root: Path) -> Path:
    """A compare dir as tuneloop.eval.compare writes it: <variant>/ suite results + compare.json."""
    out = root / "compare-out"
    variants = ["base", "base+prompt", "tuned"]
    heldout = {"base": 2.41, "base+prompt": 2.38, "tuned": 1.37}
    summaries = {}
    for v in variants:
        rows = [{"id": cid, "output": by_v[v][0], "passed": by_v[v][1],
                 "checks": [{"name": "icontains", "passed": by_v[v][1],
                             "detail": "" if by_v[v][1] else "'x' not found", "needs_judge": False}],
                 "tags": [], "n_words": 3, "weight": 1.0, "needs_judge": False, "n_tokens": 5,
                 "finish_reason": "length" if cid == "json-object" and v == "base" else "stop",
                 "prompt": [{"role": "user", "content": prompt}]}
                for cid, prompt, by_v in CASES]
        _write_jsonl(out / v / "cases.jsonl", rows)
        n_passed = sum(r["passed"] for r in rows)
        summary = {"suite": "smoke", "variant": v, "model_ref": "smollm2-135m-instruct",
                   "n": len(rows), "n_passed": n_passed, "pass_rate": n_passed / len(rows),
                   "score": n_passed / len(rows), "threshold": 0.5, "passed": n_passed >= 2}
        (out / v / "summary.json").write_text(json.dumps(summary))
        summaries[v] = {**summary, "dir": v, "heldout_loss": heldout[v],
                        "heldout_ppl": math.exp(heldout[v])}
    cases = [
        {"id": cid, "prompt": prompt, "tags": [], "weight": 1.0,
         "results": {v: {"output": by_v[v][0], "passed": by_v[v][1], "needs_judge": False,
                         "n_words": 3, "checks": []} for v in variants}}
        for cid, prompt, by_v in CASES
    ]
    (out / "compare.json").write_text(json.dumps({
        "schema_version": 1,
        "created_at": "2026-11-26T07:00:00+00:00",
        "suite": "smoke",
        "variants": summaries,
        "cases": cases,
        "pairs": {"tuned vs base": {"wins": 2, "losses": 0, "both_pass": 1, "both_fail": 1,
                                    "win_ids": ["json-object", "xss-script"], "loss_ids": []}},
        "heldout": {"data": ["heldout.jsonl"], "n_records": 12, "max_length": 1024,
                    **{v: {"loss": heldout[v], "perplexity": math.exp(heldout[v]),
                           "n_tokens": 300, "n_examples": 12, "dropped": {}} for v in variants}},
        "contamination": {"n": 13, "n_items": 4, "n_train": 120, "n_contaminated": 1,
                          "share_contaminated": 0.25, "short_items": 0,
                          "items": [{"index": 0, "where": "capital-fr", "n_grams": 1,
                                     "n_matched": 1, "share": 1.0, "train_rows": [17]}],
                          "train": ["data/train.jsonl"]},
    }))
    return out

