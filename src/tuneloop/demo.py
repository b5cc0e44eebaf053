"""The demo loop on shipped data: check → split → baselines → LoRA → evaluation → iterate → report.

The data (src/tuneloop/resources/demo/, written by scripts/make_demo_data.py) describes an
invented organisation, the Marrowick Tide Co-op, so no pretrained model knows its facts. Three
variants answer the same held-out suite of paraphrased questions:

- base: the model as shipped, no system prompt;
- base+prompt: the same model with a good system prompt (the house style rule and every fact —
  they fit its context, so prompt engineering gets a fair chance);
- fine-tuned: the model after LoRA on the training rows, no system prompt.

Then one `iterate` round (round 2): for each failing case of the fine-tuned model the document
chunk holding its fact is picked, the extractive generator (`--generator extractive`: offline,
rule-based, no model) writes several rows asking that fact in different words, answered in the
house style (never the suite's questions; the 13-gram scan drops any overlap), and the same LoRA
adapter is trained further on those rows plus a replayed sample of round 1's rows before the
suite is run again; the round's verdict (fixed / broken, McNemar p) is printed.

Each suite case has one fact check (`icontains`/`regex`) and two style checks (`starts-with`
"Answer:", `contains` the sign-off); the table reports the pass rate (all checks) and the fact and
style accuracies separately, plus each variant's held-out loss on the split's test rows.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tuneloop.data.check import CheckOptions, check_files, load_clean_records
from tuneloop.data.contamination import contamination_report
from tuneloop.data.render import Renderer
from tuneloop.data.split import split_files
from tuneloop.errors import DataError, UsageError
from tuneloop.eval.compare import CompareResult, win_loss
from tuneloop.eval.loss import heldout_loss
from tuneloop.eval.suite import load_suite
from tuneloop.eval.suite_run import run_suite
from tuneloop.infer.generate import load_for_generation
from tuneloop.iterate import read_results, run_round, verdict_lines
from tuneloop.models import EMBEDDED_ALIAS
from tuneloop.report.build import write_report
from tuneloop.synth.docs import DocsOptions
from tuneloop.train import load_config, train

DEMO_FILES = ("handbook.md", "faq.md", "meeting_notes.md", "train.jsonl", "suite.yaml",
              "system_prompt.txt", "demo.yaml")
# The demo suite's style checks; every other check of a case is a fact check.
STYLE_CHECKS = frozenset({"starts-with", "contains"})
VARIANTS = ("base", "base+prompt", "fine-tuned")
MARKER = "demo.json"  # written last; marks a finished (or overwritable) demo workdir
QUICK_CASES = 4
QUICK_STEPS = 2
DOCUMENTS = ("handbook.md", "faq.md", "meeting_notes.md")
# Round 2 trains round 1's adapter further (iterate's `continue` recipe) on the targeted rows,
# rows protecting the passing facts, and all of round 1's rows replayed, at a lower rate than
# round 1's: the best of the recipes measured in docs/iterate.md. eval.at_start off: round 1's
# final eval loss is that baseline.
ROUND2_OVERRIDES = ("training.learning_rate=3.0e-4", "training.epochs=2",
                    "training.warmup_ratio=0.0", "eval.at_start=false")
ROUND2_REPLAY = None  # every round-1 row
ROUND2_QUESTIONS = 8
ROUND2_PROTECT = 2


@dataclass
class VariantScore:
    """One row of the before/after table."""

    variant: str
    pass_rate: float
    fact_accuracy: float
    style_accuracy: float
    heldout_loss: float | None
    n_cases: int
    seconds: float = 0.0


@dataclass
class DemoResult:
    """What `run_demo` did: where everything is and the before/after numbers."""

    workdir: Path
    run_dir: Path
    report: Path
    variants: list[VariantScore]
    rows: dict[str, int]  # read / kept / rejected / train / test
    contamination: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    quick: bool = False
    rounds: list[dict[str, Any]] = field(default_factory=list)  # iterate rounds after round 1

    def score(self, variant: str) -> VariantScore:
        """The row of one variant."""
        return next(v for v in self.variants if v.variant == variant)

    def to_json(self) -> dict[str, Any]:
        """Plain dict (what demo.json holds)."""
        data = asdict(self)
        for key in ("workdir", "run_dir", "report"):
            data[key] = str(data[key])
        return data


def demo_resource(name: str) -> Path:
    """Path of a shipped demo file (package data under tuneloop/resources/demo/)."""
    path = Path(str(resources.files("tuneloop") / "resources" / "demo" / name))
    if not path.is_file():
        raise DataError(f"shipped demo file {name} is missing", where=str(path),
                        fix="reinstall tuneloop (pip install -e .) or run "
                        "scripts/make_demo_data.py")
    return path


def case_accuracy(cases: list[Any]) -> tuple[float, float]:
    """(fact accuracy, style accuracy) over suite case results, split by check name."""
    if not cases:
        return 0.0, 0.0
    fact = style = 0
    for case in cases:
        fact += all(c.passed for c in case.checks if c.name not in STYLE_CHECKS)
        style += all(c.passed for c in case.checks if c.name in STYLE_CHECKS)
    return fact / len(cases), style / len(cases)


def _prepare_workdir(workdir: Path, overwrite: bool) -> None:
    """Refuse to mix with other files; clear a previous demo only when asked (never user data)."""
    if workdir.exists() and any(workdir.iterdir()):
        if not overwrite:
            raise UsageError(f"the demo workdir {workdir} is not empty",
                             fix="pass --overwrite to replace a previous demo, or a new --workdir")
        if not (workdir / MARKER).is_file() and not (workdir / "data" / "train.jsonl").is_file():
            raise UsageError(f"{workdir} does not look like a demo workdir; refusing to clear it",
                             fix="pass an empty or new --workdir")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)


class _Steps:
    """Numbered stage lines on the console and per-stage timings."""

    def __init__(self, console: Any, total: int):
        self.console, self.total, self.n = console, total, 0
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, title: str) -> Iterator[None]:
        self.n += 1
        self.console.print(f"[bold cyan][{self.n}/{self.total}][/] {title}")
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 2)

    def note(self, text: str) -> None:
        self.console.print(f"      {text}")


def _quick_suite(suite: Any) -> Any:
    """The suite cut to a few cases (for --quick)."""
    return suite.model_copy(update={"cases": suite.cases[:QUICK_CASES]})


def _quick_prompt(system_prompt: str) -> str:
    """The system prompt with only the quick suite's facts (small test models have short contexts).

    The fact lines ("- ...") are in suite order, so the first QUICK_CASES of them are the facts
    the quick suite asks about.
    """
    lines = system_prompt.splitlines(keepends=True)
    facts = [i for i, line in enumerate(lines) if line.startswith("- ")]
    keep = set(facts[:QUICK_CASES])
    return "".join(line for i, line in enumerate(lines) if i not in facts or i in keep)


def _train_config(data_dir: Path, split_dir: Path, model_ref: str, quick: bool) -> Any:
    """demo.yaml with the split's files, the chosen model, and --quick's step cap."""
    overrides = [f"data.train=[{json.dumps(str(split_dir / 'train.jsonl'))}]",
                 f"data.eval=[{json.dumps(str(split_dir / 'test.jsonl'))}]",
                 f"model={json.dumps(model_ref)}"]
    if quick:
        overrides += [f"training.max_steps={QUICK_STEPS}", "logging.progress=false"]
    return load_config(data_dir / "demo.yaml", overrides)


def _evaluate(variant: str, loaded: tuple[Any, Any, Any], model_ref: str, suite: Any,
              heldout: list[Any], evals_dir: Path, system_prompt: str | None,
              progress: bool) -> tuple[VariantScore, Any, Any]:
    """Run the suite and the held-out loss for one variant; results land in evals_dir/variant."""
    start = time.perf_counter()
    # Batch 16, the `eval suite` default: a batch decodes until its longest answer ends, so more
    # cases per batch spread that cost (1.55x batch 8's speed, docs/benchmarks.md).
    result, _ = run_suite(suite, model_ref, out_dir=evals_dir, variant=variant,
                          system_prompt=system_prompt, batch_size=16, loaded=loaded)
    model, tokenizer, renderer = loaded
    # No max_length for the loss: the base+prompt variant's long system prompt must stay whole.
    loss_renderer = Renderer(tokenizer, template=renderer.template_name)
    # With the ~730-token system prompt, heldout_loss computes the prompt once and forwards only
    # each row's own tokens (eval/loss.py shared_prefix_loss).
    loss = heldout_loss(model, tokenizer, loss_renderer, heldout, system_prompt=system_prompt,
                        batch_size=8, progress=progress)
    fact, style = case_accuracy(result.cases)
    score = VariantScore(variant=variant, pass_rate=result.pass_rate, fact_accuracy=fact,
                         style_accuracy=style, heldout_loss=loss.loss, n_cases=len(result.cases),
                         seconds=round(time.perf_counter() - start, 2))
    return score, result, loss


def _write_compare(evals_dir: Path, scores: list[VariantScore], results: dict[str, Any],
                   losses: dict[str, Any], heldout_path: Path,
                   contamination: dict[str, Any]) -> Path:
    """compare.json in `tuneloop eval compare`'s schema (docs/eval.md), which the report reads."""
    from itertools import combinations

    names = list(results)
    first = results[names[0]]
    ids = [c.id for c in first.cases]
    variants = {}
    for s in scores:
        variants[s.variant] = {
            **results[s.variant].summary(), "dir": s.variant, "few_shot_k": 0,
            "heldout_loss": losses[s.variant].loss, "heldout_ppl": losses[s.variant].perplexity,
            "fact_accuracy": s.fact_accuracy, "style_accuracy": s.style_accuracy,
        }
    cases = []
    for k, case in enumerate(first.cases):
        cases.append({
            "id": case.id, "prompt": case.prompt[-1]["content"] if case.prompt else "",
            "tags": list(case.tags), "weight": case.weight,
            "results": {name: {"output": r.cases[k].output, "passed": r.cases[k].passed,
                               "needs_judge": r.cases[k].needs_judge,
                               "n_words": r.cases[k].n_words,
                               "checks": [c.to_json() for c in r.cases[k].checks]}
                        for name, r in results.items()},
        })
    # later variants are the "treatment", as in `eval compare`: fine-tuned vs base+prompt, ...
    pairs = {f"{b} vs {a}": win_loss([c.passed for c in results[b].cases],
                                     [c.passed for c in results[a].cases], ids)
             for a, b in combinations(names, 2)}
    heldout = {"data": [str(heldout_path)], "n_records": losses[names[0]].n_examples,
               "max_length": None, **{n: loss.to_json() for n, loss in losses.items()}}
    result = CompareResult(suite=first.suite, variants=variants, cases=cases, pairs=pairs,
                           heldout=heldout, contamination=contamination, out_dir=evals_dir)
    path = evals_dir / "compare.json"
    path.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path


def run_demo(workdir: str | Path, *, quick: bool = False, progress: bool = True,
             model: str | None = None, overwrite: bool = False, console: Any = None) -> DemoResult:
    """Run the whole loop on the shipped demo data in `workdir`; print and return the table."""
    from rich.console import Console

    console = console or Console()
    model_ref = model or EMBEDDED_ALIAS
    workdir = Path(workdir).resolve()
    _prepare_workdir(workdir, overwrite)
    data_dir, split_dir, evals_dir = workdir / "data", workdir / "split", workdir / "evals"
    data_dir.mkdir()
    for name in DEMO_FILES:  # the user sees (and can edit and rerun on) exactly what was used
        shutil.copyfile(demo_resource(name), data_dir / name)
    steps = _Steps(console, total=7)
    started = time.perf_counter()

    with steps.step("check", "data check: validate the training rows"):
        report = check_files([data_dir / "train.jsonl"], options=CheckOptions(progress=progress))
        if not report.kept:
            raise DataError(report.nothing_usable_message(), where=str(data_dir / "train.jsonl"),
                            fix="regenerate it with scripts/make_demo_data.py")
        report.write_clean(data_dir / "clean.jsonl")
        if report.rejected:
            report.write_rejects(data_dir / "rejects.jsonl")
        steps.note(f"{report.rows_read} rows read, {len(report.kept)} kept, "
                   f"{len(report.rejected)} rejected")

    with steps.step("split", "split: held-out rows for the loss, no near-duplicate leakage"):
        manifest = split_files([data_dir / "clean.jsonl"], split_dir, test_size=0.1, seed=0)
        heldout = load_clean_records([str(split_dir / "test.jsonl")])
        suite = load_suite(data_dir / "suite.yaml")
        if quick:
            suite = _quick_suite(suite)
            heldout = heldout[:QUICK_CASES]
        train_rows = load_clean_records([str(split_dir / "train.jsonl")])
        overlap = contamination_report(train_rows, [c.user_prompt for c in suite.cases])
        contamination = overlap.to_json()
        steps.note(f"{manifest['rows']['train']} train / {manifest['rows']['test']} test rows; "
                   f"suite: {len(suite.cases)} cases, {overlap.n_contaminated} sharing a "
                   f"{overlap.n}-gram with the training rows")

    system_prompt = (data_dir / "system_prompt.txt").read_text(encoding="utf-8")
    if quick:
        system_prompt = _quick_prompt(system_prompt)
    scores: list[VariantScore] = []
    results: dict[str, Any] = {}
    losses: dict[str, Any] = {}
    with steps.step("baselines", f"baselines: base and base+prompt on {model_ref}"):
        loaded = load_for_generation(model_ref)
        for variant, prompt in (("base", None), ("base+prompt", system_prompt)):
            score, results[variant], losses[variant] = _evaluate(
                variant, loaded, model_ref, suite, heldout, evals_dir, prompt, progress)
            scores.append(score)
            steps.note(f"{variant}: pass rate {score.pass_rate:.0%}")
        del loaded  # free the base model before training

    with steps.step("train", "fine-tune: LoRA on the training rows"):
        config = _train_config(data_dir, split_dir, model_ref, quick)
        trained = train(config, output_dir=workdir / "run", progress=progress)
        final = trained.final_train_loss
        steps.note(f"{trained.steps} steps, final train loss "
                   f"{'n/a' if final is None else f'{final:.3f}'}, run dir {trained.run_dir}")

    with steps.step("evaluate", "evaluate: the fine-tuned model on the same suite"):
        run_ref = str(trained.run_dir)
        loaded = load_for_generation(run_ref)
        score, results["fine-tuned"], losses["fine-tuned"] = _evaluate(
            "fine-tuned", loaded, run_ref, suite, heldout, evals_dir, None, progress)
        scores.append(score)

    with steps.step("iterate", "iterate: target the failed cases, continue training, "
                    "evaluate again (round 2)"):
        rounds = _iterate(workdir, data_dir, split_dir, model_ref, suite, evals_dir,
                          trained.run_dir, quick, progress, console)

    with steps.step("report", "report: one self-contained HTML file"):
        _write_compare(evals_dir, scores, results, losses, split_dir / "test.jsonl",
                       contamination)
        report_path = workdir / "report.html"
        runs = [trained.run_dir, *(r["run_dir"] for r in rounds)]
        write_report(runs, out=report_path, compare_dirs=[evals_dir],
                     rounds_loop=workdir / "loop")

    steps.timings["total"] = round(time.perf_counter() - started, 2)
    result = DemoResult(
        workdir=workdir, run_dir=Path(trained.run_dir), report=report_path, variants=scores,
        rows={"read": report.rows_read, "kept": len(report.kept),
              "rejected": len(report.rejected), "train": manifest["rows"]["train"],
              "test": manifest["rows"]["test"]},
        contamination={"n": overlap.n, "items": overlap.n_items,
                       "contaminated": overlap.n_contaminated},
        timings=steps.timings, quick=quick, rounds=rounds,
    )
    (workdir / MARKER).write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    print_table(result, console)
    return result


def _iterate(workdir: Path, data_dir: Path, split_dir: Path, model_ref: str, suite: Any,
             evals_dir: Path, run_dir: Path, quick: bool, progress: bool,
             console: Any) -> list[dict[str, Any]]:
    """Round 2 on the fine-tuned variant's failures; returns the round's row for the table."""
    if not read_results(evals_dir / "fine-tuned")[2]:
        console.print("      every case passed: nothing for round 2 to target")
        return []
    overrides = [f"data.train=[{json.dumps(str(split_dir / 'train.jsonl'))}]",
                 f"data.eval=[{json.dumps(str(split_dir / 'test.jsonl'))}]",
                 f"model={json.dumps(model_ref)}", "logging.progress=false"]
    again = list(ROUND2_OVERRIDES) + ([f"training.max_steps={QUICK_STEPS}"] if quick else [])
    res = run_round(evals_dir / "fine-tuned", suite=suite, config=data_dir / "demo.yaml",
                    generator="extractive", loop=workdir / "loop",
                    documents=[data_dir / d for d in DOCUMENTS], overrides=overrides,
                    run_dir=run_dir, progress=progress, console=console, recipe="continue",
                    replay=ROUND2_REPLAY, protect=ROUND2_PROTECT, train_overrides=again,
                    options=DocsOptions(chunk_words=120, overlap=20, questions=ROUND2_QUESTIONS))
    fact, style = case_accuracy(res.suite_result.cases)
    return [{"round": res.round, "variant": f"fine-tuned, round {res.round}",
             "pass_rate": res.pass_rate_after, "pass_rate_before": res.pass_rate_before,
             "fact_accuracy": fact, "style_accuracy": style, "new_rows": res.new_rows,
             "replayed_rows": res.replayed_rows,
             "dropped_contaminated": res.dropped_contaminated, "targeted": len(res.targeted),
             "fixed": res.flipped_to_pass, "broken": res.flipped_to_fail,
             "verdict": res.verdict, "significance": res.significance,
             "verdict_lines": verdict_lines(res), "run_dir": str(res.run_dir)}]


def results_table(result: DemoResult) -> Any:
    """The before/after rich table."""
    from rich.table import Table

    table = Table(title="Marrowick held-out suite: before / after fine-tuning")
    for name in ("variant", "pass rate", "fact accuracy", "style accuracy", "held-out loss"):
        table.add_column(name, justify="left" if name == "variant" else "right")
    for v in result.variants:
        loss = "—" if v.heldout_loss is None else f"{v.heldout_loss:.3f}"
        table.add_row(v.variant, f"{v.pass_rate:.1%}", f"{v.fact_accuracy:.1%}",
                      f"{v.style_accuracy:.1%}", loss)
    for r in result.rounds:
        table.add_row(r["variant"], f"{r['pass_rate']:.1%}", f"{r['fact_accuracy']:.1%}",
                      f"{r['style_accuracy']:.1%}", "—")
    return table


def print_table(result: DemoResult, console: Any) -> None:
    """Print the table, the gain over prompting, the timings and where the report is."""
    console.print(results_table(result))
    names = {v.variant for v in result.variants}
    if {"fine-tuned", "base+prompt"} <= names:
        gain = result.score("fine-tuned").pass_rate - result.score("base+prompt").pass_rate
        console.print(f"fine-tuned vs base+prompt: {gain * 100:+.1f} points pass rate")
    for r in result.rounds:
        for line in r.get("verdict_lines", []):
            console.print(line)
        console.print(f"  ({r['targeted']} failed cases targeted, {r['new_rows']} new rows, "
                      f"{r.get('replayed_rows', 0)} replayed from round 1)")
    minutes = result.timings.get("total", 0.0) / 60
    console.print(f"total time: {minutes:.1f} min "
                  f"({', '.join(f'{k} {v:.0f}s' for k, v in result.timings.items() if k != 'total')})")
    console.print(f"report: {result.report}")
