"""Gather run dirs + eval outputs + the index, draw the plots, render one self-contained HTML file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from tuneloop.errors import UsageError
from tuneloop.report import plots, tables
from tuneloop.report.arena import arena_view
from tuneloop.report.evals import EvalSet, load_eval_dir, run_eval_sets
from tuneloop.report.rounds import rounds_view
from tuneloop.report.runs import RunData, attach_index, load_run
from tuneloop.report.synth import synth_views
from tuneloop.report.trials import trials_view

TEMPLATE = "report.html.j2"


@dataclass
class ReportSummary:
    """What was written: the file and the headline counts (the CLI prints these)."""

    out: Path
    runs: int
    columns: int
    cases: int
    flipped: int
    warnings: list[str] = field(default_factory=list)


def short_fingerprint(value: Any, length: int = 12) -> str:
    """`sha256:abcdef…` / a fingerprint dict → the first `length` hex chars of its id."""
    if isinstance(value, dict):
        value = value.get("id")
    if not value:
        return "—"
    text = str(value)
    return text.split(":", 1)[-1][:length]


def _environment():
    import jinja2

    folder = resources.files("tuneloop").joinpath("resources", "report")

    def load(name: str) -> str:
        return folder.joinpath(name).read_text(encoding="utf-8")

    # autoescape=True for every template: all run names, prompts and model outputs are user text
    # (R22). Only our own CSS and the base64 data URIs are trusted.
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = tables.pct
    env.filters["num"] = tables.num
    env.filters["shortfp"] = short_fingerprint
    return env


def _latest_metric_suite(run: RunData) -> float | None:
    """The pass rate of the last `suite` row in metrics.jsonl (when the index has none)."""
    rates = [r.get("pass_rate") for r in run.suite if isinstance(r.get("pass_rate"), (int, float))]
    return rates[-1] if rates else None


def _run_overview(run: RunData) -> dict[str, Any]:
    cfg = tables.flatten(run.config)
    idx = run.index_row or {}
    fp = run.fingerprint or {}
    return {
        "name": run.name,
        "model": idx.get("model") or run.run_info.get("model") or cfg.get("model")
        or cfg.get("model.ref") or cfg.get("model.name") or "—",
        "method": idx.get("method") or run.run_info.get("method") or cfg.get("method")
        or cfg.get("train.method") or "—",
        "fingerprint": short_fingerprint(
            idx.get("data_fingerprint") or run.run_info.get("data_fingerprint") or fp.get("id")
        ),
        "steps": run.steps if run.steps is not None else "—",
        "best_eval_loss": run.best_eval_loss,
        "latest_suite": idx.get("latest_suite_score") if idx.get("latest_suite_score")
        is not None else _latest_metric_suite(run),
        # run.json is newer than the index while a run is going (the index row is written at the
        # start and the end only).
        "status": run.run_info.get("status") or idx.get("status") or "—",
        "error": run.run_info.get("error") or "",
        "path": str(run.path),
    }


def _is_judge_dir(path: str | Path) -> bool:
    """A `tuneloop eval judge --out` directory (summary.json beside judgments.jsonl)."""
    p = Path(path)
    return (p / "summary.json").is_file() and (p / "judgments.jsonl").is_file()


def _read_judge_summary(path: Path) -> dict[str, Any]:
    import json

    src = path / "summary.json"
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the judge summary: {exc}", where=str(src),
                         fix="pass the --out directory of `tuneloop eval judge`, or re-run it")
    if not isinstance(data, dict) or "mode" not in data:
        raise UsageError("not a judge summary (no 'mode')", where=str(src),
                         fix="pass the --out directory of `tuneloop eval judge`")
    data["_source"] = str(path)
    return data


def judge_agreement_views(runs: Sequence[RunData],
                          judge_summaries: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """One view per judge run that measured agreement with people: from the index rows of the
    runs (one row per pair, the same figures: shown once) and from judge output directories."""
    from tuneloop.eval.judge_agreement import FEW_VOTES, compact

    views: list[dict[str, Any]] = []
    seen: set[str] = set()
    for run in runs:
        for e in run.index_evals:
            extra = e.get("extra") or {}
            human = extra.get("human_agreement") if e.get("kind") == "judge" else None
            source = str(e.get("details_path") or "")
            if human and source not in seen:
                seen.add(source)
                views.append({"judge": extra.get("judge", "—"), "source": source,
                              "few": FEW_VOTES, "a": human})
    for summary in judge_summaries:
        source = str(Path(summary["_source"]) / "summary.json")
        if summary.get("human_agreement") and source not in seen:
            seen.add(source)
            views.append({"judge": summary.get("judge", "—"), "source": source,
                          "few": FEW_VOTES, "a": compact(summary["human_agreement"])})
    return views


def gather(
    run_dirs: Sequence[str | Path],
    compare_dirs: Sequence[str | Path] = (),
    eval_dirs: Sequence[str | Path] = (),
    index_path: Path | None = None,
) -> tuple[list[RunData], list[EvalSet]]:
    """Read every input; UsageError for a path that is not what it was passed as."""
    if not run_dirs and not compare_dirs and not eval_dirs:
        raise UsageError("nothing to report", fix="pass one or more run directories")
    runs = [load_run(p) for p in run_dirs]
    attach_index(runs, index_path)
    sets: list[EvalSet] = []
    for run in runs:
        sets.extend(run_eval_sets(run.path, run.name))
    for path in [*compare_dirs, *eval_dirs]:
        # A dir under RUN/evals/ is already read with its run; passing it again adds nothing.
        if Path(path).resolve() not in {s.path for s in sets}:
            sets.append(load_eval_dir(path))
    return runs, sets


def render_html(runs: list[RunData], sets: list[EvalSet],
                arena: dict[str, Any] | None = None,
                rounds: dict[str, Any] | None = None,
                judge_summaries: Sequence[dict[str, Any]] = (),
                trials: dict[str, Any] | None = None) -> tuple[str, ReportSummary]:
    """The report HTML and its headline counts (out is filled in by write_report).

    `arena` is an arena results document (`tuneloop arena results --json`); it adds a section.
    `rounds` is `report.rounds.rounds_view(loop)`: an iterate loop's rounds side by side.
    `trials` is `report.trials.trials_view(sweep)`: a sweep's trials side by side.
    `judge_summaries` are `eval judge` summary.json documents (their agreement with people shows
    beside the judge results recorded in the index).
    """
    columns = tables.all_columns(sets)
    case_rows = tables.case_rows(columns)
    cfg_keys, cfg_rows = tables.config_diff(runs)
    warnings = [w for r in runs for w in r.warnings] + [w for s in sets for w in s.warnings]
    flipped = sum(r.flipped for r in case_rows)
    contamination = [
        tables.contamination_view(s.label, s.contamination)
        for s in sets
        if s.contamination is not None
    ]
    context = {
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "runs": runs,
        "overview": [_run_overview(r) for r in runs],
        "sets": sets,
        "columns": columns,
        "case_rows": case_rows,
        "flipped": flipped,
        "cfg_keys": cfg_keys,
        "cfg_rows": cfg_rows,
        "checkpoint_rows": tables.suite_checkpoint_rows(runs),
        "contamination": contamination,
        "contaminated_ids": set().union(*(c.ids for c in contamination)),
        "pair_rows": tables.pair_rows(sets),
        "loss_png": plots.loss_curves(runs),
        "mfu_png": plots.mfu_over_steps(runs),
        "steps_png": plots.suite_over_steps(runs),
        "bars_png": plots.pass_rate_bars(columns),
        "warnings": warnings,
        "synth": synth_views(runs),
        "show": tables.show,
        "arena": arena_view(arena) if arena is not None else None,
        "rounds": rounds,
        "trials": trials,
        "judge_agreement": judge_agreement_views(runs, judge_summaries),
    }
    html = _environment().get_template(TEMPLATE).render(**context)
    summary = ReportSummary(Path(), len(runs), len(columns), len(case_rows), flipped, warnings)
    return html, summary


def write_report(
    run_dirs: Sequence[str | Path],
    *,
    out: str | Path,
    compare_dirs: Sequence[str | Path] = (),
    eval_dirs: Sequence[str | Path] = (),
    index_path: Path | None = None,
    arena: dict[str, Any] | None = None,
    rounds_loop: str | Path | None = None,
    sweep_dir: str | Path | None = None,
) -> ReportSummary:
    """Build the report for `run_dirs` (+ eval output dirs, `eval judge` output dirs among them,
    + an arena results document) and write it to `out` atomically."""
    judge_dirs = [Path(d) for d in eval_dirs if _is_judge_dir(d)]
    eval_dirs = [d for d in eval_dirs if not _is_judge_dir(d)]
    judges = [_read_judge_summary(d) for d in judge_dirs]
    only_extra = (arena is not None or judges or sweep_dir is not None) and not (
        run_dirs or compare_dirs or eval_dirs)
    runs, sets = ([], []) if only_extra else gather(run_dirs, compare_dirs, eval_dirs, index_path)
    rounds = rounds_view(rounds_loop, index_path) if rounds_loop is not None else None
    trials = trials_view(sweep_dir, index_path) if sweep_dir is not None else None
    html, summary = render_html(runs, sets, arena, rounds, judges, trials)
    out = Path(out)
    if out.is_dir():
        raise UsageError("--out is a directory", where=str(out), fix="pass a file name like report.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)  # a reader never sees half a report
    summary.out = out.resolve()
    return summary
