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

# The same per-file sha256 as `tuneloop data split` writes into its manifest.
from tuneloop.data.split import fingerprint as file_sha256


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
