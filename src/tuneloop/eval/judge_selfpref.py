"""Self-preference check: is the judge the model that wrote part of the judged model's data?

A judge favours answers that sound like its own writing. Training rows may record their
provenance (`meta.generator`: the generator spec that wrote the row, as `tuneloop synth` writes
it). For each judged model that is a run directory, the run's `data/fingerprint.json` lists its
training files; they are read with the record loader and the rows whose generator is the judge
are counted. A non-zero share becomes a warning in the judge summary (and the report).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneloop.backends import parse_spec
from tuneloop.data.load import load_records
from tuneloop.errors import TuneloopError
from tuneloop.rundir import FINGERPRINT_FILE


def spec_identity(spec: str | dict[str, Any]) -> tuple[str, ...]:
    """What makes two generator specs the same model: local ref, or server URL + model name."""
    if isinstance(spec, str) and spec.startswith("local:"):
        spec = spec[len("local:"):]
    try:
        conf = parse_spec(spec)
    except TuneloopError:
        return ("?", str(spec))
    if conf["type"] == "openai":
        return ("openai", str(conf["base_url"]).rstrip("/"), str(conf["model"]))
    ref = str(conf["ref"]).rstrip("/")
    path = Path(ref).expanduser()
    return ("local", str(path.resolve()) if path.exists() else ref)


def run_dir_of_spec(spec: str) -> Path | None:
    """The run directory a judged model spec points at (the run or its model/ dir), if any."""
    if spec.startswith("openai:"):
        return None
    path = Path(spec).expanduser()
    for cand in (path, path.parent):
        if (cand / FINGERPRINT_FILE).is_file():
            return cand
    return None


def _generator_of(record: Any) -> Any:
    meta = record.meta.get("generator") if isinstance(record.meta, dict) else None
    if meta is not None:
        return meta
    try:
        row = json.loads(record.raw or "")
    except ValueError:
        return None
    m = row.get("meta") if isinstance(row, dict) else None
    return m.get("generator") if isinstance(m, dict) else None


def training_provenance(run_dir: Path) -> tuple[dict[tuple[str, ...], int], int, list[str]]:
    """(rows per generator identity, training rows, notes) from a run's recorded data files."""
    fp = json.loads((run_dir / FINGERPRINT_FILE).read_text(encoding="utf-8"))
    counts: dict[tuple[str, ...], int] = {}
    total, notes = 0, []
    for item in fp.get("files", []):
        name = item.get("path") if isinstance(item, dict) else item
        if not name:
            continue
        path = Path(name)
        if not path.is_absolute() and not path.exists() and (run_dir / path).exists():
            path = run_dir / path
        if not path.exists():
            notes.append(f"training file {name} not found: its provenance is not checked")
            continue
        for record in load_records(str(path)).records:
            total += 1
            gen = _generator_of(record)
            if gen:
                key = spec_identity(gen)
                counts[key] = counts.get(key, 0) + 1
    return counts, total, notes


def self_preference(judge: str, models: dict[str, str]) -> list[dict[str, Any]]:
    """One entry per judged run whose training data the judge generated (share > 0).

    `models` maps display label → spec. Each entry: model, run_dir, rows, of, share, warning.
    """
    judge_id = spec_identity(judge)
    out = []
    for label, spec in models.items():
        run_dir = run_dir_of_spec(spec)
        if run_dir is None:
            continue
        counts, total, _ = training_provenance(run_dir)
        mine = counts.get(judge_id, 0)
        if not mine or not total:
            continue
        share = mine / total
        out.append({
            "model": label, "run_dir": str(run_dir), "rows": mine, "of": total, "share": share,
            "warning": (f"self-preference: the judge {judge} generated {share:.0%} ({mine} of "
                        f"{total}) of the training rows of {label}; judges favour text like "
                        "their own, so its scores for this model may be inflated. Judge with "
                        "another model (a different --judge) to check."),
        })
    return out


__all__ = ["run_dir_of_spec", "self_preference", "spec_identity", "training_provenance"]
