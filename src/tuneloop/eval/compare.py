"""Prompt engineering vs fine-tuning: base, base + prompt, and the tuned model, side by side.

Every variant runs the same suite (and, with held-out data, the same held-out loss); per-case
wins/losses between variants show *where* fine-tuning helped or hurt. The output directory holds
one `<variant>/` suite result per variant and `compare.json` (schema in docs/eval.md).
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml

from tuneloop.data.check import load_clean_records
from tuneloop.data.contamination import contamination_report
from tuneloop.errors import EvalError
from tuneloop.eval.loss import heldout_loss, load_heldout_records
from tuneloop.eval.suite import Suite, load_suite
from tuneloop.eval.suite_run import default_out_dir, run_suite
from tuneloop.index import record_eval
from tuneloop.infer.generate import load_for_generation
from tuneloop.models import renderer_for, resolve_model_ref, run_dir_of

COMPARE_SCHEMA_VERSION = 1


@dataclass
class Variant:
    """One column of the comparison: a model reference and the prompt it is given."""

    name: str
    model_ref: str
    system_prompt: str | None = None
    few_shot: list[list[dict[str, str]]] = field(default_factory=list)


@dataclass
class CompareResult:
    """Per-variant summaries, per-case pass per variant, pairwise wins/losses, held-out loss."""

    suite: str
    variants: dict[str, dict[str, Any]]
    cases: list[dict[str, Any]]
    pairs: dict[str, dict[str, Any]]
    heldout: dict[str, Any] | None = None
    contamination: dict[str, Any] | None = None
    out_dir: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """The compare.json document."""
        return {
            "schema_version": COMPARE_SCHEMA_VERSION,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "suite": self.suite,
            "variants": self.variants,
            "cases": self.cases,
            "pairs": self.pairs,
            "heldout": self.heldout,
            "contamination": self.contamination,
        }


def win_loss(a: list[bool], b: list[bool], ids: list[str]) -> dict[str, Any]:
    """Case-by-case: A wins where it passes and B fails, loses the reverse, else ties."""
    wins = [i for i, x, y in zip(ids, a, b, strict=True) if x and not y]
    losses = [i for i, x, y in zip(ids, a, b, strict=True) if y and not x]
    both = sum(x and y for x, y in zip(a, b, strict=True))
    return {"wins": len(wins), "losses": len(losses), "both_pass": both,
            "both_fail": len(ids) - len(wins) - len(losses) - both,
            "win_ids": wins, "loss_ids": losses}


def build_variants(
    base: str, tuned: str, *, system_prompt: str | None,
    few_shot: list[list[dict[str, str]]] | None,
) -> list[Variant]:
    """base, base+prompt (only when a system prompt or few-shot examples are given), tuned."""
    variants = [Variant("base", base)]
    if system_prompt or few_shot:
        variants.append(Variant("base+prompt", base, system_prompt, list(few_shot or [])))
    variants.append(Variant("tuned", tuned))
    return variants


def training_data_of(run_dir: Path) -> list[str]:
    """Training data paths named in RUN/config.yaml (empty if none can be read)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return []
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return []
    data = config.get("data") if isinstance(config, dict) else None
    train = data.get("train") if isinstance(data, dict) else None
    if isinstance(train, str):
        train = [train]
    return [str(p) for p in train or [] if isinstance(p, str)]


def contamination_summary(run_dir: Path | None, suite: Suite) -> dict[str, Any] | None:
    """n-gram overlap of the suite's prompts/references with the run's training data."""
    if run_dir is None:
        return None
    paths = training_data_of(run_dir)
    if not paths:
        return {"skipped": f"no data.train paths in {run_dir / 'config.yaml'}"}
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        return {"skipped": f"training data not found: {', '.join(missing)}", "train": paths}
    train = load_clean_records(paths)
    items = [{"prompt": "\n".join(m["content"] for m in c.messages_for()),
              "output": c.reference or ""} for c in suite.cases]
    report = contamination_report(train, items, n=13).to_json()
    for item in report["items"]:  # name suite cases by id, not position
        item["where"] = suite.cases[item["index"]].id
    report["train"] = paths
    return report


def compare(
    *,
    base: str | None,
    tuned: str,
    suite: str | Path | Suite,
    system_prompt: str | None = None,
    few_shot: list[list[dict[str, str]]] | None = None,
    data: list[str | Path] | None = None,
    out_dir: str | Path | None = None,
    batch_size: int = 8,
    judge: Any = None,
    max_length: int | None = 1024,
    device: str = "cpu",
) -> CompareResult:
    """Run the suite (and held-out loss) on base, base+prompt and tuned; write compare.json."""
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    if base is None:
        base = resolve_model_ref(tuned).base_ref
        if base is None:
            raise EvalError(f"{tuned} does not name its base model", fix="pass --base REF")
    heldout_records = load_heldout_records(data) if data else None
    out = Path(out_dir) if out_dir is not None else default_out_dir(tuned, f"compare-{suite.name}")
    if (out / "compare.json").exists():
        raise EvalError(f"a comparison already exists in {out}",
                        fix="pass a new --out directory (or remove the old one)")
    variants = build_variants(base, tuned, system_prompt=system_prompt, few_shot=few_shot)
    results, losses = {}, {}
    loaded_ref, loaded = None, None
    for v in variants:
        if v.model_ref != loaded_ref:
            loaded = None
            gc.collect()  # free the previous model before loading the next
            loaded = load_for_generation(v.model_ref, device)
            loaded_ref = v.model_ref
        result, _ = run_suite(suite, v.model_ref, out_dir=out, variant=v.name,
                              system_prompt=v.system_prompt, few_shot=v.few_shot,
                              batch_size=batch_size, judge=judge, loaded=loaded)
        results[v.name] = result
        if heldout_records is not None:
            renderer = renderer_for(v.model_ref, loaded[1], max_length=max_length)
            loss = heldout_loss(loaded[0], loaded[1], renderer, heldout_records,
                                system_prompt=v.system_prompt, few_shot=v.few_shot,
                                batch_size=batch_size)
            losses[v.name] = loss
            record_eval(model_ref=v.model_ref, kind="loss",
                        name=",".join(Path(str(p)).name for p in data or []),
                        score=loss.loss, n=loss.n_tokens, run_dir=run_dir_of(v.model_ref),
                        variant=v.name, extra=loss.to_json())
    loaded = None
    gc.collect()

    ids = [c.id for c in suite.cases]
    summaries = {}
    for v in variants:
        r = results[v.name]
        summaries[v.name] = {
            **r.summary(),
            "dir": v.name,
            "few_shot_k": len(v.few_shot),
            "heldout_loss": losses[v.name].loss if v.name in losses else None,
            "heldout_ppl": losses[v.name].perplexity if v.name in losses else None,
        }
    cases = []
    for k, case in enumerate(suite.cases):
        cases.append({
            "id": case.id,
            "prompt": case.user_prompt,
            "tags": list(case.tags),
            "weight": case.weight,
            "results": {
                name: {"output": r.cases[k].output, "passed": r.cases[k].passed,
                       "needs_judge": r.cases[k].needs_judge, "n_words": r.cases[k].n_words,
                       "checks": [c.to_json() for c in r.cases[k].checks]}
                for name, r in results.items()
            },
        })
    pairs = {}
    for a, b in combinations([v.name for v in variants], 2):
        # later variants are the "treatment": tuned vs base, tuned vs base+prompt, prompt vs base
        pairs[f"{b} vs {a}"] = win_loss([c.passed for c in results[b].cases],
                                        [c.passed for c in results[a].cases], ids)
    heldout = None
    if heldout_records is not None:
        heldout = {"data": [str(p) for p in data or []], "n_records": len(heldout_records),
                   "max_length": max_length,
                   **{name: loss.to_json() for name, loss in losses.items()}}
    contamination = contamination_summary(run_dir_of(tuned), suite)
    result = CompareResult(suite=suite.name, variants=summaries, cases=cases, pairs=pairs,
                           heldout=heldout, contamination=contamination, out_dir=out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False)
                                      + "\n", encoding="utf-8")
    return result


def print_compare(result: CompareResult, *, file: Any = None) -> None:
    """Side-by-side table of variants, then pairwise wins/losses."""
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=file or sys.stdout, width=120)
    names = list(result.variants)
    table = Table(title=f"compare — suite {result.suite}")
    table.add_column("")
    for name in names:
        table.add_column(name, justify="right")
    rows = [("pass rate", "pass_rate", "{:.1%}"), ("weighted score", "score", "{:.1%}"),
            ("passed threshold", "passed", "{}"), ("mean words", "mean_words", "{:.1f}"),
            ("held-out loss", "heldout_loss", "{:.4f}"), ("held-out ppl", "heldout_ppl", "{:.2f}")]
    for label, key, fmt in rows:
        values = [result.variants[n].get(key) for n in names]
        if all(v is None for v in values):
            continue
        table.add_row(label, *["–" if v is None else fmt.format(v) for v in values])
    console.print(table)
    cases = Table(title="per case (✓ pass, ✗ fail, ? needs judge)")
    cases.add_column("case")
    for name in names:
        cases.add_column(name, justify="center")
    for case in result.cases:
        marks = []
        for name in names:
            r = case["results"][name]
            marks.append("?" if r["needs_judge"] else ("✓" if r["passed"] else "✗"))
        cases.add_row(escape(case["id"]), *marks)
    console.print(cases)
    for pair, wl in result.pairs.items():
        console.print(f"{pair}: {wl['wins']} wins, {wl['losses']} losses, "
                      f"{wl['both_pass']} both pass, {wl['both_fail']} both fail")
    if result.contamination and "n_contaminated" in result.contamination:
        c = result.contamination
        console.print(f"contamination: {c['n_contaminated']}/{c['n_items']} suite cases share a "
                      f"{c['n']}-gram with the training data")
    if result.out_dir is not None:
        console.print(f"written: {result.out_dir / 'compare.json'}")
