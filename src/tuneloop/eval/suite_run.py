"""Running a suite: batched greedy generation, checks, results, files and the index row."""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tuneloop.data.check import load_clean_records
from tuneloop.errors import EvalError
from tuneloop.eval.checks import CheckContext, CheckResult, JudgeFn, run_check
from tuneloop.eval.judge import rubric_judge_fn
from tuneloop.eval.suite import Suite, load_suite
from tuneloop.index import record_eval
from tuneloop.infer.generate import generate, load_for_generation
from tuneloop.models import run_dir_of
from tuneloop.progress import eta_progress
from tuneloop.workspace import workspace_home

Messages = list[dict[str, str]]


@dataclass
class CaseResult:
    """One case's outcome: the model's output and every check's result."""

    id: str
    output: str
    passed: bool
    checks: list[CheckResult]
    tags: list[str] = field(default_factory=list)
    n_words: int = 0
    weight: float = 1.0
    needs_judge: bool = False
    n_tokens: int = 0
    finish_reason: str = ""
    prompt: Messages = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """One line of cases.jsonl."""
        data = asdict(self)
        data["checks"] = [c.to_json() for c in self.checks]
        return data


@dataclass
class SuiteResult:
    """A suite run on one model variant: per-case results and the scores derived from them."""

    suite: str
    threshold: float
    cases: list[CaseResult]
    variant: str = ""
    model_ref: str = ""
    system_prompt: str | None = None
    few_shot_k: int = 0

    @property
    def pass_rate(self) -> float:
        """Share of cases that passed (unweighted)."""
        return sum(c.passed for c in self.cases) / len(self.cases) if self.cases else 0.0

    @property
    def score(self) -> float:
        """Weighted share of cases that passed (what the threshold is compared with)."""
        total = sum(c.weight for c in self.cases)
        return sum(c.weight for c in self.cases if c.passed) / total if total else 0.0

    @property
    def passed(self) -> bool:
        """True when the weighted score reaches the suite's threshold."""
        return self.score >= self.threshold - 1e-12

    @property
    def needs_judge(self) -> int:
        """Cases left ungraded because a judge check had no judge (counted as not passed)."""
        return sum(c.needs_judge for c in self.cases)

    def by_tag(self) -> dict[str, float]:
        """Pass rate per tag."""
        groups: dict[str, list[bool]] = defaultdict(list)
        for c in self.cases:
            for tag in c.tags:
                groups[tag].append(c.passed)
        return {tag: sum(v) / len(v) for tag, v in sorted(groups.items())}

    def summary(self) -> dict[str, Any]:
        """The summary.json content."""
        n = len(self.cases)
        return {
            "suite": self.suite,
            "variant": self.variant,
            "model_ref": self.model_ref,
            "n": n,
            "n_passed": sum(c.passed for c in self.cases),
            "pass_rate": self.pass_rate,
            "score": self.score,
            "threshold": self.threshold,
            "passed": self.passed,
            "needs_judge": self.needs_judge,
            "by_tag": self.by_tag(),
            "mean_words": sum(c.n_words for c in self.cases) / n if n else 0.0,
            "system_prompt": self.system_prompt,
            "few_shot_k": self.few_shot_k,
        }


def _as_suite(suite_path_or_suite: str | Path | Suite) -> Suite:
    if isinstance(suite_path_or_suite, Suite):
        return suite_path_or_suite
    return load_suite(suite_path_or_suite)


def _few_shot_turns(few_shot: Any) -> list[Messages]:
    """Accept Records or message lists; keep only the user/assistant turns of each example."""
    out: list[Messages] = []
    for item in few_shot or []:
        messages = getattr(item, "messages", item)
        if messages is None:
            raise EvalError("few-shot examples must be chat records (user/assistant turns)",
                            where=getattr(item, "where", None),
                            fix="use a chat/alpaca file for --few-shot")
        out.append([dict(m) for m in messages if m["role"] != "system"])
    return out


def load_few_shot(path: str | Path, k: int) -> list[Messages]:
    """The first k usable chat examples of a data file, as few-shot turns."""
    if k < 1:
        raise EvalError(f"-k must be at least 1, got {k}", fix="pass -k 1 or more")
    records = [r for r in load_clean_records([str(path)]) if r.messages]
    if len(records) < k:
        raise EvalError(f"asked for {k} few-shot examples but the file has {len(records)} usable",
                        where=str(path), fix=f"pass -k {len(records)} or a larger file")
    return _few_shot_turns(records[:k])


def progress_bar(enabled: bool = True):
    """A transient rich progress bar on stderr (silent when stderr is not a terminal)."""
    from rich.console import Console

    console = Console(stderr=True)
    return eta_progress("[progress.description]{task.description}", console=console,
                        transient=True, enabled=enabled and console.is_terminal)


def generate_outputs(
    model: Any, tokenizer: Any, renderer: Any, prompts: list[Messages],
    max_new_tokens: list[int], *, batch_size: int = 8, progress: bool = True,
) -> list[Any]:
    """Greedy generations for prompts, one batched `generate` call per length budget."""
    results: list[Any] = [None] * len(prompts)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, n in enumerate(max_new_tokens):
        groups[n].append(i)
    for n, idxs in groups.items():
        # generate sorts by length, batches, and shows its own progress bar
        outs = generate(model, tokenizer, renderer, [prompts[i] for i in idxs],
                        max_new_tokens=n, temperature=0.0, batch_size=batch_size,
                        progress=progress)
        for i, out in zip(idxs, outs, strict=True):
            results[i] = out
    return results


def score_case(case: Any, output: str, judge: JudgeFn | None) -> tuple[bool, list[CheckResult]]:
    """Run a case's checks on an output; passed only if every check passed."""
    ctx = CheckContext(reference=case.reference, prompt=case.user_prompt, judge=judge)
    results = [run_check(c.name, c.arg, output, ctx) for c in case.checks]
    return all(r.passed for r in results), results


def run_suite_on_model(
    model: Any,
    tokenizer: Any,
    renderer: Any,
    suite_path_or_suite: str | Path | Suite,
    *,
    system_prompt: str | None = None,
    few_shot: Any = None,
    batch_size: int = 8,
    judge: JudgeFn | str | None = None,
    progress: bool = True,
) -> SuiteResult:
    """Generate an answer for every case (greedy, batched), run the checks, return the result."""
    suite = _as_suite(suite_path_or_suite)
    turns = _few_shot_turns(few_shot)
    prompts = [suite.messages_for(c, system_prompt=system_prompt, few_shot=turns)
               for c in suite.cases]
    budgets = [c.max_new_tokens or suite.max_new_tokens for c in suite.cases]
    # Called mid-training too (suite-gated saves): dropout off while generating, then restored.
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        gens = generate_outputs(model, tokenizer, renderer, prompts, budgets,
                                batch_size=batch_size, progress=progress)
    finally:
        model.train(was_training)
    judge_spec = judge if judge is not None else suite.judge
    judge_fn = make_judge(judge_spec) if suite.needs_judge else None
    cases = []
    for case, prompt, gen in zip(suite.cases, prompts, gens, strict=True):
        passed, checks = score_case(case, gen.text, judge_fn)
        cases.append(CaseResult(
            id=case.id, output=gen.text, passed=passed, checks=checks, tags=list(case.tags),
            n_words=len(gen.text.split()), weight=case.weight,
            needs_judge=any(c.needs_judge for c in checks), n_tokens=gen.n_tokens,
            finish_reason=gen.finish_reason, prompt=prompt,
        ))
    return SuiteResult(suite=suite.name, threshold=suite.threshold, cases=cases,
                       system_prompt=system_prompt, few_shot_k=len(turns))


def make_judge(spec: Any) -> JudgeFn | None:
    """A judge callable from a spec (model ref / openai:URL#model / Generator); None if no spec."""
    if spec is None:
        return None
    if callable(spec) and not hasattr(spec, "generate"):
        return spec  # already (rubric, prompt, output, reference) -> (passed, why)
    return rubric_judge_fn(spec)


# --- loading a model by reference, writing results, recording in the index ----------------------


def slug(text: str) -> str:
    """A filesystem-safe variant name."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text)).strip("-") or "model"


def write_results(result: SuiteResult, out_dir: Path) -> tuple[Path, Path]:
    """Write cases.jsonl + summary.json under out_dir; refuses to overwrite earlier results."""
    out_dir = Path(out_dir)
    cases_path, summary_path = out_dir / "cases.jsonl", out_dir / "summary.json"
    if cases_path.exists() or summary_path.exists():
        raise EvalError(f"results already exist in {out_dir}", where=str(out_dir),
                        fix="pass a new --out directory (or remove the old results)")
    out_dir.mkdir(parents=True, exist_ok=True)
    with cases_path.open("w", encoding="utf-8") as f:
        for case in result.cases:
            f.write(json.dumps(case.to_json(), ensure_ascii=False) + "\n")
    summary = result.summary()
    summary["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                            encoding="utf-8")
    return cases_path, summary_path


def default_out_dir(model_ref: str | Path, name: str) -> Path:
    """RUN/evals/<name>-<stamp> for a run dir, else <home>/evals/<name>-<stamp>."""
    run_dir = run_dir_of(model_ref)
    parent = run_dir / "evals" if run_dir is not None else workspace_home() / "evals"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = parent / f"{slug(name)}-{stamp}", 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{slug(name)}-{stamp}-{n}"
    return candidate


def run_suite(
    suite: str | Path | Suite,
    model_ref: str | Path,
    *,
    out_dir: str | Path | None = None,
    variant: str | None = None,
    system_prompt: str | None = None,
    few_shot: Any = None,
    batch_size: int = 8,
    judge: Any = None,
    device: str = "cpu",
    loaded: tuple[Any, Any, Any] | None = None,
    progress: bool = True,
) -> tuple[SuiteResult, Path]:
    """Load a model by reference, run the suite, write OUT/<variant>/ and record it in the index."""
    suite = _as_suite(suite)
    if loaded is None:
        loaded = load_for_generation(str(model_ref), device)
    result = run_suite_on_model(*loaded, suite, system_prompt=system_prompt, few_shot=few_shot,
                                batch_size=batch_size, judge=judge, progress=progress)
    result.variant = variant or slug(Path(str(model_ref)).name)
    result.model_ref = str(model_ref)
    out = Path(out_dir) if out_dir is not None else default_out_dir(model_ref, suite.name)
    variant_dir = out / result.variant
    cases_path, _ = write_results(result, variant_dir)
    run_dir = run_dir_of(model_ref)
    record_eval(
        model_ref=str(model_ref), kind="suite", name=suite.name, score=result.pass_rate,
        n=len(result.cases), details_path=cases_path, run_dir=run_dir, variant=result.variant,
        extra={"score": result.score, "passed": result.passed, "threshold": result.threshold,
               "needs_judge": result.needs_judge, "suite_source": suite.source},
    )
    return result, variant_dir


def print_table(result: SuiteResult, *, file: Any = None) -> None:
    """A rich table of per-case results and the summary line."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=file or sys.stdout, width=120)
    table = Table(title=f"{result.suite} — {result.variant} ({result.model_ref})")
    for col in ("case", "result", "words", "failed checks"):
        table.add_column(col)
    for c in result.cases:
        status = "[yellow]needs judge[/]" if c.needs_judge else (
            "[green]pass[/]" if c.passed else "[red]FAIL[/]")
        failed = "; ".join(f"{r.name}: {r.detail}" for r in c.checks if not r.passed)
        table.add_row(escape(c.id), status, str(c.n_words), escape(failed))
    console.print(table)
    verdict = "[green]PASSED[/]" if result.passed else "[red]BELOW THRESHOLD[/]"
    extra = f", {result.needs_judge} need a judge" if result.needs_judge else ""
    console.print(
        f"{verdict}: {sum(c.passed for c in result.cases)}/{len(result.cases)} cases "
        f"(pass rate {result.pass_rate:.1%}, weighted score {result.score:.1%}, "
        f"threshold {result.threshold:.1%}{extra})"
    )
