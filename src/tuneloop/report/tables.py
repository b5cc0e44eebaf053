"""Pure table building for the report: flattened config diff, per-case rows with flips, rates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tuneloop.report.evals import CaseResult, Column, EvalSet
from tuneloop.report.runs import RunData

_MISSING = "—"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (`train.lr`); lists stay values (shown as JSON)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value} if prefix else {}


def show(value: Any) -> str:
    """A config value as short text (JSON for lists/dicts, so types stay visible)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def config_diff(runs: list[RunData]) -> tuple[list[str], list[list[str]]]:
    """(keys, rows): flattened config keys whose values differ between runs; all keys if one run."""
    flat = [flatten(r.config) for r in runs]
    keys = sorted(set().union(*flat)) if flat else []
    rows = []
    for key in keys:
        values = [show(f[key]) if key in f else _MISSING for f in flat]
        if len(runs) == 1 or len(set(values)) > 1:
            rows.append([key, *values])
    return keys, rows


@dataclass
class CaseRow:
    """One case across every column; `flipped` when some column passed and another failed."""

    case_id: str
    prompt: str
    cells: list[CaseResult | None]
    flipped: bool


def case_rows(columns: list[Column]) -> list[CaseRow]:
    """Per-case rows over all columns in first-seen order; flipped rows first."""
    order: dict[str, str] = {}
    for col in columns:
        for case_id, case in col.cases.items():
            if case_id not in order or not order[case_id]:
                order[case_id] = case.prompt
    rows = []
    for case_id, prompt in order.items():
        cells = [col.cases.get(case_id) for col in columns]
        verdicts = {c.passed for c in cells if c is not None and c.passed is not None}
        rows.append(CaseRow(case_id, prompt, cells, flipped=verdicts == {True, False}))
    # Stable sort: flips first, otherwise keep the suite's order.
    return sorted(rows, key=lambda r: not r.flipped)


def all_columns(sets: list[EvalSet]) -> list[Column]:
    """Every column of every eval set, in order."""
    return [col for es in sets for col in es.columns]


def suite_checkpoint_rows(runs: list[RunData]) -> list[list[str]]:
    """[run, suite, variant, step/checkpoint, pass rate, n] from metrics suite rows + the index."""
    rows = []
    for run in runs:
        for r in run.suite:
            rate = r.get("pass_rate")
            rows.append([
                run.name,
                str(r.get("suite", "")),
                str(r.get("variant", "tuned")),
                str(r.get("checkpoint") or f"step {r.get('step', '?')}"),
                pct(rate),
                show(r.get("n", "")),
            ])
        for e in run.index_evals:
            if e.get("kind") == "suite":
                rows.append([
                    run.name,
                    str(e.get("name", "")),
                    str(e.get("variant") or ""),
                    str(e.get("checkpoint") or "final"),
                    pct(e.get("score")),
                    show(e.get("n", "")),
                ])
    return rows


def pct(value: Any) -> str:
    """0.4 → '40.0%'; anything else → '—'."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _MISSING
    return f"{100 * value:.1f}%"


def num(value: Any, digits: int = 4) -> str:
    """A float with `digits` decimals, or '—'."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _MISSING
    return f"{value:.{digits}f}"


@dataclass
class ContaminationView:
    """One contamination scan: a headline, its scalar fields, the overlapping items, their ids."""

    label: str
    headline: str
    rows: list[list[str]]
    items: list[list[str]]
    ids: set[str]


def contamination_view(label: str, value: Any) -> ContaminationView:
    """Shape tuneloop.data.contamination's report (or any mapping/list) for display."""
    if not isinstance(value, dict):
        return ContaminationView(label, "", contamination_rows(value), [], set())
    if value.get("skipped"):
        return ContaminationView(label, f"not scanned: {value['skipped']}", [], [], set())
    headline = ""
    if isinstance(value.get("n_contaminated"), int) and isinstance(value.get("n_items"), int):
        headline = (
            f"{value['n_contaminated']} of {value['n_items']} evaluation case(s) share a "
            f"{value.get('n', '?')}-gram with the training data "
            f"({value.get('n_train', '?')} training rows scanned)"
        )
    items, ids = [], set()
    raw_items = value.get("items")
    if isinstance(raw_items, list) and all(isinstance(i, dict) for i in raw_items):
        for item in raw_items:
            where = item.get("where")
            where = str(where if where is not None else item.get("index", "?"))
            ids.add(where)
            items.append([
                where,
                f"{item.get('n_matched', '?')}/{item.get('n_grams', '?')}",
                pct(item.get("share")),
                show(item.get("train_rows", "")),
            ])
        value = {k: v for k, v in value.items() if k != "items"}
    return ContaminationView(label, headline, contamination_rows(value), items, ids)


def pair_rows(sets: list[EvalSet]) -> list[list[str]]:
    """[set, pair, wins, losses, both pass, both fail, won cases, lost cases] from compare pairs."""
    rows = []
    for es in sets:
        for pair, wl in es.pairs.items():
            if not isinstance(wl, dict):
                continue
            rows.append([
                es.label, str(pair), show(wl.get("wins", "")), show(wl.get("losses", "")),
                show(wl.get("both_pass", "")), show(wl.get("both_fail", "")),
                ", ".join(map(str, wl.get("win_ids") or [])),
                ", ".join(map(str, wl.get("loss_ids") or [])),
            ])
    return rows


def contamination_rows(value: Any) -> list[list[str]]:
    """Contamination summary as [key, value] rows (flattened; long lists summarised by length)."""
    if value is None:
        return []
    if isinstance(value, list):
        return [["overlapping items", str(len(value))]] + [
            ["item", show(v)] for v in value[:20]
        ]
    rows = []
    for key, item in flatten(value).items():
        if isinstance(item, list) and len(item) > 20:
            rows.append([key, f"{len(item)} items; first: {show(item[:5])}"])
        else:
            rows.append([key, show(item)])
    return rows
