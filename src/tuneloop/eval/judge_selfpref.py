"""Self-preference check: is the judge the judged model, or the model that wrote its data?

A judge favours answers that sound like its own writing. Two ways to know it is judging itself:

- identity: the judge's base model is a judged model's base model — the same reference, or
  through a run directory (a LoRA adapter or full fine-tune records its base, the `base_ref`
  `models.resolve_model_ref` reports, followed to the root). The warning gives the share of the
  judge's verdicts (judgment rows) that involve that model.
- provenance: training rows may record `meta.generator` (the generator spec that wrote the row,
  as `tuneloop synth` writes it). For each judged run directory, the run's
  `data/fingerprint.json` lists its training files; they are read with the record loader and the
  rows whose generator is the judge (or shares its base model) are counted.

Either becomes one warning per judged model in the judge summary (and the index and report).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneloop.backends import parse_spec
from tuneloop.data.load import load_records
from tuneloop.errors import TuneloopError
from tuneloop.models import METADATA_FILE, read_model_metadata
from tuneloop.rundir import FINGERPRINT_FILE

_MAX_BASE_DEPTH = 8  # base of a base …: a loop in broken metadata must not hang the judge


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


def base_identity(spec: str | dict[str, Any]) -> tuple[str, ...]:
    """The identity of the model a spec is built on: its root base model for a run directory or
    adapter (followed through each recorded base), the spec's own identity otherwise."""
    ident = spec_identity(spec)
    for _ in range(_MAX_BASE_DEPTH):
        if ident[0] != "local":
            return ident
        base = _recorded_base(Path(ident[1]))
        if not base:
            return ident
        ident = spec_identity(base)
    return ident


def _recorded_base(path: Path) -> str | None:
    """The base model a run directory, saved model or adapter directory records (None: none).

    Read from the same files `models.resolve_model_ref` reads, without resolving the base itself
    (for a LoRA run that would convert or load the base model just to print a warning).
    """
    if not path.is_dir():
        return None  # an alias, hub id or single file is its own base
    model_dir = path / "model" if (path / "model" / METADATA_FILE).is_file() else path
    try:
        if (model_dir / METADATA_FILE).is_file():
            return str(read_model_metadata(model_dir)["base_model"])
        if (path / "adapter_config.json").is_file():
            cfg = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
            return cfg.get("base_model_name_or_path") or None
    except (TuneloopError, OSError, ValueError, KeyError):
        return None  # unreadable metadata: compare the model as given
    return None


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


def self_preference(judge: str, models: dict[str, str],
                    judged_rows: dict[str, int] | None = None,
                    total_rows: int | None = None) -> list[dict[str, Any]]:
    """One entry per judged model the judge may favour: the same base model, or training data
    the judge generated (share > 0).

    `models` maps display label → spec; `judged_rows` label → judgment rows involving it (their
    share of all `total_rows` goes into the warning). Each entry: model, run_dir, basis (a list of
    "same_base_model" / "generated_training_data"), warning; for the base model: judge_base,
    model_base, judged_rows, judged_of, judged_share; for training data: rows, of, share.
    """
    judge_id = spec_identity(judge)
    judge_base = base_identity(judge)
    total_judged = total_rows or 0
    out = []
    for label, spec in models.items():
        entry: dict[str, Any] = {"model": label, "run_dir": None, "basis": []}
        texts = []
        model_base = base_identity(spec)
        if model_base == judge_base:
            entry["basis"].append("same_base_model")
            mine = (judged_rows or {}).get(label, 0)
            entry.update({"judge_base": _show(judge_base), "model_base": _show(model_base),
                          "judged_rows": mine, "judged_of": total_judged,
                          "judged_share": mine / total_judged if total_judged else None})
            share = f" ({mine} of {total_judged} judge rows, {mine / total_judged:.0%})" \
                if total_judged else ""
            texts.append(f"the judge {judge} is built on the same base model as {label} "
                         f"({_show(model_base)}): it judges itself{share}")
        run_dir = run_dir_of_spec(spec)
        if run_dir is not None:
            entry["run_dir"] = str(run_dir)
            counts, total, _ = training_provenance(run_dir)
            mine = sum(n for key, n in counts.items()
                       if key == judge_id or base_identity(_spec_of(key)) == judge_base)
            if mine and total:
                entry["basis"].append("generated_training_data")
                entry.update({"rows": mine, "of": total, "share": mine / total})
                texts.append(f"the judge {judge} generated {mine / total:.0%} ({mine} of "
                             f"{total}) of the training rows of {label}")
        if not texts:
            continue
        entry["warning"] = ("self-preference: " + "; ".join(texts) + ". Judges favour text "
                            "like their own, so its scores for this model may be inflated. "
                            "Judge with another model (a different --judge) to check.")
        out.append(entry)
    return out


def _spec_of(identity: tuple[str, ...]) -> str:
    """A spec string back from an identity (to follow a generator's own base model)."""
    if identity[0] == "openai":
        return f"openai:{identity[1]}#{identity[2]}"
    return identity[-1]


def _show(identity: tuple[str, ...]) -> str:
    return _spec_of(identity)


__all__ = ["base_identity", "run_dir_of_spec", "self_preference", "spec_identity",
           "training_provenance"]
