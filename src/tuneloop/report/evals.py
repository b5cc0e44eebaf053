"""Read evaluation outputs (suite dirs and compare dirs) into columns of per-case results.

Formats (docs/eval.md): a suite output dir holds `<variant>/cases.jsonl` + `<variant>/summary.json`
(or `cases.jsonl` directly); a compare dir holds `compare.json` with the variants, per-case pass
per variant, held-out loss per variant and contamination, plus optionally the per-variant suite
dirs. Field names are read tolerantly (`id`/`case_id`, `pass`/`passed`, ...) because outputs of
older versions must still render.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.errors import UsageError
from tuneloop.rundir import RunDir, read_json_lenient, read_jsonl_lenient

_ID_KEYS = ("id", "case_id", "name")
_PROMPT_KEYS = ("prompt", "input", "messages", "question", "instruction")
_OUTPUT_KEYS = ("output", "response", "completion", "text", "generation")
_PASS_KEYS = ("pass", "passed", "ok", "correct")


@dataclass
class CaseResult:
    """One case as one variant/run answered it."""

    case_id: str
    prompt: str = ""
    output: str = ""
    passed: bool | None = None
    detail: str = ""
    finish_reason: str = ""


@dataclass
class Column:
    """One variant (or run) of one evaluation: its per-case results and summary numbers."""

    label: str
    source: Path
    cases: dict[str, CaseResult] = field(default_factory=dict)
    pass_rate: float | None = None
    n: int | None = None
    heldout_loss: float | None = None

    def fill_pass_rate(self) -> None:
        """Compute pass rate and n from the cases when the summary did not give them."""
        judged = [c.passed for c in self.cases.values() if c.passed is not None]
        if self.pass_rate is None and judged:
            self.pass_rate = sum(judged) / len(judged)
        if self.n is None and self.cases:
            self.n = len(self.cases)


@dataclass
class EvalSet:
    """One compare or suite output directory."""

    path: Path
    label: str
    columns: list[Column] = field(default_factory=list)
    contamination: Any = None
    pairs: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _first(row: dict[str, Any], keys: tuple[str, ...], default: Any = None) -> Any:
    for key in keys:
        if key in row and row[key] is not None:
            return row[key]
    return default


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def prompt_text(value: Any) -> str:
    """A prompt as readable text: a string, or chat messages as `role: content` lines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        lines = []
        for msg in value:
            if isinstance(msg, dict):
                lines.append(f"{msg.get('role', '?')}: {msg.get('content', '')}")
            else:
                lines.append(str(msg))
        return "\n".join(lines)
    return "" if value is None else str(value)


def _passed(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value >= 1 if value in (0, 1) else value >= 0.5
    if isinstance(value, str) and value.lower() in ("pass", "passed", "true", "fail", "false"):
        return value.lower() in ("pass", "passed", "true")
    return None


def _failed_checks(row: dict[str, Any]) -> str:
    checks = row.get("checks")
    if not isinstance(checks, list):
        return str(row.get("reason") or "")
    failed = []
    for check in checks:
        if isinstance(check, dict) and _passed(_first(check, _PASS_KEYS)) is False:
            name = check.get("name") or check.get("type") or "check"
            msg = check.get("detail") or check.get("message") or check.get("reason") or ""
            failed.append(f"{name}: {msg}" if msg else str(name))
    return "; ".join(failed)


def _detail(row: dict[str, Any]) -> str:
    """The failed checks; a case left ungraded (no judge) says so first, as the suite counts it
    as not passed."""
    detail = _failed_checks(row)
    if row.get("needs_judge"):
        detail = "; ".join(filter(None, ["ungraded: needs a judge", detail]))
    return detail


def case_from_row(row: dict[str, Any], fallback_id: str) -> CaseResult:
    """One cases.jsonl row (or compare.json case) as a CaseResult."""
    return CaseResult(
        case_id=str(_first(row, _ID_KEYS, fallback_id)),
        prompt=prompt_text(_first(row, _PROMPT_KEYS)),
        output=str(_first(row, _OUTPUT_KEYS, "")),
        passed=_passed(_first(row, _PASS_KEYS)),
        detail=_detail(row),
        finish_reason=str(row.get("finish_reason") or ""),
    )


def load_suite_column(path: Path, label: str, warnings: list[str]) -> Column:
    """A dir holding cases.jsonl (+ summary.json) as one column."""
    col = Column(label=label, source=path)
    cases_file = path / "cases.jsonl"
    if cases_file.is_file():
        for i, row in enumerate(read_jsonl_lenient(cases_file, warnings), start=1):
            case = case_from_row(row, f"{cases_file.name}:{i}")
            if case.case_id in col.cases:
                warnings.append(f"{cases_file}: duplicate case id {case.case_id!r}; last kept")
            col.cases[case.case_id] = case
    summary = read_json_lenient(path / "summary.json", warnings)
    if isinstance(summary, dict):
        col.pass_rate = _num(summary.get("pass_rate"))
        n = summary.get("n", summary.get("total"))
        col.n = n if isinstance(n, int) else None
        col.heldout_loss = _num(_first(summary, ("heldout_loss", "held_out_loss", "loss")))
    col.fill_pass_rate()
    return col


def _suite_columns(root: Path, prefix: str, warnings: list[str]) -> list[Column]:
    """Columns from `root/cases.jsonl` or each `root/<variant>/cases.jsonl`."""
    if (root / "cases.jsonl").is_file():
        return [load_suite_column(root, prefix, warnings)]
    cols = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if (sub / "cases.jsonl").is_file() or (sub / "summary.json").is_file():
            cols.append(load_suite_column(sub, f"{prefix} · {sub.name}", warnings))
    return cols


def _variant_infos(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """compare.json's variants as {name: info}; accepts a list of names/dicts or a mapping."""
    raw = data.get("variants")
    out: dict[str, dict[str, Any]] = {}
    if isinstance(raw, dict):
        for name, info in raw.items():
            out[str(name)] = info if isinstance(info, dict) else {}
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and item.get("name") is not None:
                out[str(item["name"])] = item
            elif isinstance(item, str):
                out[item] = {}
    return out


def _per_variant(value: Any, variant: str, keys: tuple[str, ...]) -> Any:
    """value[variant] for a mapping, or value[variant][key] when nested one level."""
    if not isinstance(value, dict) or variant not in value:
        return None
    item = value[variant]
    return _first(item, keys) if keys and isinstance(item, dict) else item


def _compare_columns(data: dict[str, Any], path: Path, label: str, warnings: list[str]):
    infos = _variant_infos(data)
    cases = _first(data, ("cases", "per_case", "case_results"), [])
    if isinstance(cases, dict):  # {case_id: {...}}
        cases = [dict(v, id=k) if isinstance(v, dict) else {"id": k} for k, v in cases.items()]
    if not isinstance(cases, list):
        warnings.append(f"{path}: 'cases' is not a list; per-case table empty for it")
        cases = []
    for row in cases:  # variants only named inside the cases still get columns
        if isinstance(row, dict):
            for key in ("outputs", "pass", "passed", "results"):
                if isinstance(row.get(key), dict):
                    for name in row[key]:
                        infos.setdefault(str(name), {})
    losses = _first(data, ("heldout_loss", "held_out_loss", "loss"), {})
    rates = _first(data, ("pass_rate", "pass_rates", "summary"), {})
    columns = {name: Column(label=f"{label} · {name}", source=path) for name in infos}
    for i, row in enumerate(cases, start=1):
        if not isinstance(row, dict):
            continue
        base = case_from_row(row, f"case-{i}")
        for name, col in columns.items():
            result = _per_variant(row.get("results"), name, ())
            if isinstance(result, dict):  # {"results": {variant: {output, pass}}}
                output = _first(result, _OUTPUT_KEYS)
                passed = _passed(_first(result, _PASS_KEYS))
                detail = _detail(result)
            else:
                output = _per_variant(row.get("outputs"), name, _OUTPUT_KEYS)
                passed = _passed(_per_variant(_first(row, _PASS_KEYS), name, _PASS_KEYS))
                detail = ""
            if output is None and passed is None:
                continue
            col.cases[base.case_id] = CaseResult(
                base.case_id, base.prompt, "" if output is None else str(output), passed, detail
            )
    for name, col in columns.items():
        info = infos[name]
        col.pass_rate = _num(_first(info, ("pass_rate", "score")))
        if col.pass_rate is None:
            col.pass_rate = _num(_per_variant(rates, name, ("pass_rate", "score")))
        col.heldout_loss = _num(_first(info, ("heldout_loss", "held_out_loss", "loss")))
        if col.heldout_loss is None:
            col.heldout_loss = _num(_per_variant(losses, name, ("loss", "heldout_loss")))
        if col.heldout_loss is None:  # compare.json "heldout": {variant: {"loss": ...}}
            col.heldout_loss = _num(_per_variant(data.get("heldout"), name, ("loss",)))
        n = info.get("n")
        col.n = n if isinstance(n, int) else None
        col.fill_pass_rate()
    return list(columns.values())


def _name_contaminated_items(contamination: Any, cases: Any) -> None:
    """Items that carry only a position (`index`) get the case id at that position in `cases`."""
    if not isinstance(contamination, dict) or not isinstance(cases, list):
        return
    for item in contamination.get("items") or []:
        if not isinstance(item, dict) or item.get("where") is not None:
            continue
        k = item.get("index")
        if isinstance(k, int) and 0 <= k < len(cases) and isinstance(cases[k], dict):
            item["where"] = _first(cases[k], _ID_KEYS)


def load_eval_dir(path: str | Path, *, label: str | None = None) -> EvalSet:
    """Read a compare dir (compare.json) or a suite output dir; UsageError if it is neither."""
    root = Path(path)
    if not root.is_dir():
        raise UsageError(
            "evaluation output directory not found", where=str(root),
            fix="pass the OUT directory given to `tuneloop eval` / `tuneloop compare`",
        )
    es = EvalSet(path=root.resolve(), label=label or root.resolve().name)
    data = read_json_lenient(root / "compare.json", es.warnings)
    if isinstance(data, dict):
        es.columns = _compare_columns(data, root / "compare.json", es.label, es.warnings)
        es.contamination = data.get("contamination")
        _name_contaminated_items(es.contamination, data.get("cases"))
        pairs = data.get("pairs")
        es.pairs = pairs if isinstance(pairs, dict) else {}
    # Per-variant suite dirs fill in variants (or cases) compare.json did not carry.
    have = {c.label: c for c in es.columns}
    for col in _suite_columns(root, es.label, es.warnings):
        if col.label not in have:
            es.columns.append(col)
        else:  # same variant: keep compare.json's verdicts, add what only cases.jsonl has
            known = have[col.label]
            for case_id, case in col.cases.items():
                if case_id not in known.cases:
                    known.cases[case_id] = case
                elif not known.cases[case_id].finish_reason:
                    known.cases[case_id].finish_reason = case.finish_reason
            known.fill_pass_rate()
    if es.contamination is None:
        es.contamination = read_json_lenient(root / "contamination.json", es.warnings)
    if not es.columns and es.contamination is None:
        raise UsageError(
            "no compare.json, cases.jsonl or <variant>/cases.jsonl found",
            where=str(root),
            fix="pass the OUT directory given to `tuneloop eval` / `tuneloop compare`",
        )
    return es


def run_eval_sets(run_dir: Path, run_name: str) -> list[EvalSet]:
    """Eval outputs stored inside a run (`RUN/evals/<name>/`), labelled with the run's name."""
    evals = RunDir(Path(run_dir)).evals
    if not evals.is_dir():
        return []
    found = []
    for sub in sorted(p for p in evals.iterdir() if p.is_dir()):
        try:
            found.append(load_eval_dir(sub, label=f"{run_name} · {sub.name}"))
        except UsageError:
            continue  # other artefacts (judge logs, benchmark dumps) live here too
    return found
