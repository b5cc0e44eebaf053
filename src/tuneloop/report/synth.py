"""The report's synthetic-data section: what a `tuneloop synth` run kept, dropped, and why.

A run's training files are listed in its data fingerprint; a file that sits in a synth output
directory (beside `stats.json` + `manifest.json`) gets a section: counts by filter, the novelty
histogram (ROUGE-L to the nearest task), instruction lengths, top first words, machine share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.report.runs import RunData
from tuneloop.rundir import read_json_lenient

RECIPES = ("self-instruct", "docs")


@dataclass
class SynthView:
    """One synth output directory as the template shows it."""

    path: Path
    recipe: str
    generator: str
    judge: str | None
    stopped: str
    accepted: int
    rows: dict[str, Any]
    machine_share: float | None
    rejected: list[tuple[str, int, float]]  # reason, count, share of all rejections
    novelty: list[tuple[str, int, float]]  # bin label, count, share
    lengths: dict[str, Any]
    first_words: list[tuple[str, int]]
    requests: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _shares(pairs: list[tuple[str, int]]) -> list[tuple[str, int, float]]:
    total = sum(n for _, n in pairs) or 1
    return [(k, n, n / total) for k, n in pairs]


def load_synth_dir(path: str | Path) -> SynthView | None:
    """A SynthView for a synth output directory, or None if it is not one."""
    path = Path(path)
    warnings: list[str] = []
    manifest = read_json_lenient(path / "manifest.json", warnings) if (path / "manifest.json").is_file() \
        else None
    stats = read_json_lenient(path / "stats.json", warnings) if (path / "stats.json").is_file() else None
    if not isinstance(manifest, dict) or manifest.get("recipe") not in RECIPES \
            or not isinstance(stats, dict):
        return None
    hist = stats.get("novelty_histogram") or {}
    bins, counts = hist.get("bins") or [], hist.get("counts") or []
    novelty = [(f"{bins[i]:.1f}–{bins[i + 1]:.1f}", int(c))
               for i, c in enumerate(counts) if i + 1 < len(bins)]
    rejected = stats.get("rejected") or {}
    return SynthView(
        path=path.resolve(), recipe=str(manifest.get("recipe")),
        generator=str(manifest.get("generator")), judge=manifest.get("judge"),
        stopped=str(stats.get("stopped", "—")), accepted=int(stats.get("accepted") or 0),
        rows=stats.get("rows") or {}, machine_share=stats.get("machine_share"),
        rejected=_shares(sorted(((str(k), int(v)) for k, v in rejected.items()),
                                key=lambda kv: -kv[1])),
        novelty=_shares(novelty), lengths=stats.get("instruction_words") or {},
        first_words=[(str(w), int(n)) for w, n in (stats.get("first_words") or [])][:15],
        requests=stats.get("requests") or {}, warnings=warnings)


def synth_views(runs: list[RunData], extra_dirs: list[Path] = ()) -> list[SynthView]:
    """Synth directories behind the runs' training files (plus any given), each once."""
    seen: set[Path] = set()
    views: list[SynthView] = []
    candidates = list(extra_dirs)
    for run in runs:
        for f in (run.fingerprint or {}).get("files") or []:
            if isinstance(f, dict) and isinstance(f.get("path"), str):
                candidates.append(Path(f["path"]).parent)
    for d in candidates:
        key = Path(d).resolve()
        if key in seen:
            continue
        seen.add(key)
        view = load_synth_dir(d)
        if view is not None:
            views.append(view)
    return views
