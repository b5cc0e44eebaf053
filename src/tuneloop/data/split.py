"""Deterministic train/test split that keeps exact and near-duplicate clusters on one side."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.data import curate
from tuneloop.data.check import CheckOptions, check_files
from tuneloop.data.records import Record
from tuneloop.errors import DataError, UsageError


@dataclass
class SplitResult:
    """Train and test records (input order kept within each) and the cluster count."""

    train: list[Record]
    test: list[Record]
    clusters: int
    multi_row_clusters: int


def split_records(records: Sequence[Record], *, test_size: float = 0.1, seed: int = 0,
                  threshold: float = curate.DEFAULT_THRESHOLD, near_dup: bool = True,
                  progress: Any = None) -> SplitResult:
    """Split so that every duplicate cluster lands wholly in train or wholly in test.

    test_size < 1 is a fraction of rows, >= 1 a row count. Whole clusters are drawn in a
    seeded random order until the test side reaches its target; a cluster that would overshoot
    is skipped, so the test side never exceeds its target.
    """
    n = len(records)
    target = int(test_size) if test_size >= 1 else max(1, round(n * test_size))
    if test_size <= 0 or target >= n:
        raise UsageError(f"--test-size {test_size} leaves no rows for "
                         f"{'test' if test_size <= 0 else 'train'} ({n} rows)",
                         fix="use a fraction between 0 and 1 or a count below the row count")
    labels = curate.duplicate_clusters(records, threshold=threshold, near=near_dup,
                                       progress=progress)
    members: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        members.setdefault(c, []).append(i)
    order = sorted(members)  # cluster ids are their first row: stable across runs
    random.Random(seed).shuffle(order)
    test_idx: set[int] = set()
    for c in order:
        size = len(members[c])
        if len(test_idx) + size <= target:
            test_idx.update(members[c])
        if len(test_idx) == target:
            break
    if not test_idx:
        biggest = max(len(m) for m in members.values())
        raise DataError(f"no duplicate cluster fits a test side of {target} rows (the smallest "
                        f"cluster has {min(len(m) for m in members.values())} rows, the "
                        f"largest {biggest})",
                        fix="raise --test-size, or dedupe first with `tuneloop data check --out`")
    train = [r for i, r in enumerate(records) if i not in test_idx]
    test = [r for i, r in enumerate(records) if i in test_idx]
    return SplitResult(train, test, len(members), sum(1 for m in members.values() if len(m) > 1))


def fingerprint(path: str | Path) -> str:
    """sha256 of a file, or of every file under a directory (names and bytes, sorted)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _write(path: Path, rows: Sequence[Any]) -> str:
    """Write rows (Records or Rejected: anything with to_json) as JSONL; returns its sha256."""
    data = "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in rows).encode()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()


def split_files(paths: Sequence[str | Path], out_dir: str | Path, *, test_size: float = 0.1,
                seed: int = 0, format: str | None = None,
                field_map: str | Mapping[str, str] | None = None,
                threshold: float = curate.DEFAULT_THRESHOLD, progress: bool = False
                ) -> dict[str, Any]:
    """Load + validate, split without leakage, write train/test/rejects JSONL and manifest.json."""
    # Duplicates are kept (and kept together) here: split is not dedup; `data check` is.
    report = check_files(paths, format=format, field_map=field_map,
                         options=CheckOptions(exact_dup=False, near_dup=False, pii=False,
                                              progress=progress))
    if not report.kept:
        raise DataError(report.nothing_usable_message(), where=", ".join(map(str, paths)),
                        fix="run `tuneloop data check` to see why")
    result = split_records(report.kept, test_size=test_size, seed=seed, threshold=threshold)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hashes = {"train.jsonl": _write(out / "train.jsonl", result.train),
              "test.jsonl": _write(out / "test.jsonl", result.test)}
    if report.rejected:
        hashes["rejects.jsonl"] = _write(out / "rejects.jsonl", report.rejected)
    else:  # a rerun into the same dir must not leave an earlier run's rejects behind
        (out / "rejects.jsonl").unlink(missing_ok=True)
    manifest = {
        "seed": seed, "test_size": test_size, "near_dup_threshold": threshold,
        "rows": {"read": report.rows_read, "train": len(result.train), "test": len(result.test),
                 "rejected": len(report.rejected), "skipped_blank_lines": report.skipped_blank},
        "clusters": {"total": result.clusters, "multi_row": result.multi_row_clusters},
        "sha256": hashes,
        "sources": [{"path": str(p), "sha256": fingerprint(p) if Path(p).exists() else None}
                    for p in paths],
    }
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "manifest.json")
    return manifest
