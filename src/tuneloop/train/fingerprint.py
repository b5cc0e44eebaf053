"""Data fingerprints: per-file sha256 + row counts, and a hash of the rendered training set.

A resume compares the stored fingerprint with the current one (R6): a changed file or a changed
rendering (template, max length, tokenizer) means the saved data position no longer points at the
same examples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (or of every file under a directory, in sorted order)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def rendered_hash(examples: Iterable[Any]) -> str:
    """sha256 over the token ids and labels of rendered examples, in order."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(b"I")
        digest.update(",".join(map(str, ex.input_ids)).encode())
        digest.update(b"L")
        digest.update(",".join(map(str, ex.labels)).encode())
    return digest.hexdigest()


def data_fingerprint(
    files: Sequence[str],
    *,
    rows: dict[str, int],
    train_examples: Sequence[Any],
    eval_examples: Sequence[Any],
    dropped: dict[str, int],
) -> dict[str, Any]:
    """The fingerprint.json content; `id` is the hash a resume compares."""
    file_info = []
    for name in files:
        p = Path(name)
        sha = file_sha256(p) if p.exists() else None  # hub ids: the rendered hash still covers them
        file_info.append({"path": name, "sha256": sha, "rows": rows.get(name)})
    train_hash = rendered_hash(train_examples)
    eval_hash = rendered_hash(eval_examples)
    ident = hashlib.sha256(f"{train_hash}:{eval_hash}".encode()).hexdigest()
    return {
        "id": ident,
        "files": file_info,
        "train_examples": len(train_examples),
        "eval_examples": len(eval_examples),
        "train_rendered_sha256": train_hash,
        "eval_rendered_sha256": eval_hash,
        "dropped": dropped,
    }
