"""The report's rounds section: the rounds of an iterate loop side by side.

Reads the loop's rows from the index (`index.list_rounds`) and each round's cases.jsonl: pass rate
per round with its 95 % Wilson interval, and per round the cases that flipped against its parent
(fail → pass, pass → fail), the exact McNemar p-value and the verdict; the loop's current (best)
round is marked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.eval.stats import format_p, wilson_interval
from tuneloop.index import best_round, list_rounds


@dataclass
class RoundView:
    """One round as the template shows it."""

    round: int
    parent: int | None
    pass_rate: float | None
    n_cases: int | None
    new_rows: int | None
    run_dir: str | None
    fixed: list[str] = field(default_factory=list)  # failed in the parent, pass here
    broken: list[str] = field(default_factory=list)  # passed in the parent, fail here
    interval: str = ""  # "[38.9, 67.5]" in percent
    p_value: str = ""  # "p = 0.031" (exact McNemar against the parent), "" for round 1
    verdict: str = ""  # improved | no change | regression ("" for round 1)
    recipe: str = ""
    current: bool = False  # the loop's current model (its best round)


def _passed(path: str) -> dict[str, bool]:
    p = Path(path)
    if not p.is_file():
        return {}
    out = {}
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out[row["id"]] = bool(row["passed"])
    return out


def rounds_view(loop: str | Path, index_path: Path | None = None) -> dict[str, Any]:
    """{"loop", "rounds": [RoundView...], "cases": [(id, [passed per round])]} for the template."""
    rows = list_rounds(loop, index=index_path)
    by_id = {r["id"]: r for r in rows}
    results = {r["id"]: _passed(r["eval_path"]) for r in rows}
    current = best_round(rows)["id"] if rows else None
    views = []
    for r in rows:
        parent = by_id.get(r["parent_id"])
        mine, theirs = results[r["id"]], results.get(r["parent_id"], {})
        views.append(RoundView(
            round=r["round"], parent=parent["round"] if parent else None,
            pass_rate=r["pass_rate"], n_cases=r["n_cases"],
            new_rows=(r["extra"] or {}).get("new_rows"), run_dir=r["run_dir"],
            fixed=sorted(k for k, v in mine.items() if v and theirs.get(k) is False),
            broken=sorted(k for k, v in mine.items() if not v and theirs.get(k) is True),
            interval=_interval(mine), verdict=r.get("verdict") or "",
            p_value=format_p(r["p_value"]) if r.get("p_value") is not None else "",
            recipe=(r["extra"] or {}).get("recipe", ""), current=r["id"] == current))
    ids = sorted({k for res in results.values() for k in res})
    cases = [(k, [results[r["id"]].get(k) for r in rows]) for k in ids]
    return {"loop": str(loop), "rounds": views, "cases": cases}


def _interval(passed: dict[str, bool]) -> str:
    if not passed:
        return ""
    lo, hi = wilson_interval(sum(passed.values()), len(passed))
    return f"[{lo * 100:.1f}, {hi * 100:.1f}]"
