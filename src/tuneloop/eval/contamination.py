"""The eval side of the contamination scan: turn suites and eval data files into plain texts.

`tuneloop.data.contamination` compares texts and knows nothing of suites; this module knows
what a suite case says (its prompt turns and reference) and hands those over as items.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tuneloop.data.contamination import EvalItem
from tuneloop.data.load import load_records
from tuneloop.eval.suite import Suite, load_suite


def suite_items(suite: Suite, label: str) -> list[EvalItem]:
    """One item per case: its user/assistant turns and its reference, named `label#case-id`."""
    items: list[EvalItem] = []
    for case in suite.cases:
        turns = [m["content"] for m in case.messages_for() if m["role"] != "system"]
        text = "\n".join(turns + ([case.reference] if case.reference else []))
        items.append({"where": f"{label}#{case.id}", "text": text})
    return items


def load_eval_items(paths: Iterable[str | Path]) -> list[EvalItem]:
    """Eval data to scan: suite YAML files (prompt + reference per case) or any data file."""
    items: list[EvalItem] = []
    data_paths: list[str] = []
    for p in paths:
        if str(p).lower().endswith((".yaml", ".yml")):
            items.extend(suite_items(load_suite(p), str(p)))
        else:
            data_paths.append(str(p))
    if data_paths:
        items.extend(load_records(data_paths).records)
    return items
