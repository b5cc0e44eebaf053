"""Curation on records: exact and near-duplicate detection (MinHash/LSH) and dataset statistics.

Functions here never mutate their input; they return indices, clusters or new records.

Near-duplicates: word 3-gram shingles of the normalised conversation, 64-permutation MinHash,
LSH banded for recall (16 bands x 4 rows at 0.8: a pair at Jaccard 0.8 becomes a
candidate with probability 0.9998, where datasketch's balanced 5x11 banding misses a quarter of
pairs at 0.88), and every candidate pair confirmed with the exact Jaccard of its shingle sets, so
the reported similarity is exact and MinHash noise never decides. 64 permutations (not 128)
halve hashing cost; shingles are hashed with xxh32 (faster than datasketch's sha1); datasketch
builds the signatures (MinHash.generator, shared permutations); banding is done in numpy
(`lsh_buckets`: MinHashLSH's per-row inserts were the slowest step).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tuneloop.data.records import Record

NUM_PERM = 64
SHINGLE_WORDS = 3
DEFAULT_THRESHOLD = 0.8

_WORD = re.compile(r"\w+")


def normalize(text: str) -> str:
    """Lower-case and collapse whitespace (what 'exact duplicate' compares)."""
    return " ".join(text.split()).lower()


def record_text(record: Record) -> str:
    """The whole record as one string: turns as 'role: content' lines, or the raw text."""
    if record.messages is None:
        return record.text or ""
    text = "\n".join(f"{m['role']}: {m['content']}" for m in record.messages)
    if record.rejected is not None:  # pairs that differ only in the rejected answer are distinct
        text += f"\nrejected: {record.rejected}"
    return text


def exact_key(record: Record) -> str:
    """A digest that is equal for rows equal up to whitespace and case."""
    return hashlib.blake2b(normalize(record_text(record)).encode(), digest_size=16).hexdigest()


def exact_duplicates(records: Sequence[Record]) -> dict[int, int]:
    """{index of a duplicate: index of the first row it repeats}."""
    first: dict[str, int] = {}
    dups: dict[int, int] = {}
    for i, rec in enumerate(records):
        key = exact_key(rec)
        if key in first:
            dups[i] = first[key]
        else:
            first[key] = i
    return dups


def shingles(text: str, k: int = SHINGLE_WORDS) -> list[bytes]:
    """Word k-grams of the normalised text (the whole text if it has fewer than k words)."""
    words = _WORD.findall(text.lower())
    if len(words) <= k:
        return [" ".join(words).encode()]
    return [" ".join(words[i:i + k]).encode() for i in range(len(words) - k + 1)]


def shingle_hashes(record: Record, k: int = SHINGLE_WORDS) -> list[int]:
    """xxh32 of each word k-gram of the record (what MinHash and exact Jaccard work on)."""
    import xxhash

    h = xxhash.xxh32_intdigest
    return [h(s) for s in shingles(record_text(record), k)]


def jaccard(a: set[int], b: set[int]) -> float:
    """Exact Jaccard similarity of two shingle sets."""
    return len(a & b) / len(a | b) if a or b else 1.0


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) whose candidate probability at `threshold` is at least 99.9%.

    datasketch's default banding balances false positives against false negatives; for dedup
    and leak-free splits a missed pair costs more than a checked extra one (candidates are
    confirmed with exact Jaccard), so take the most rows per band that still keeps recall.
    """
    best = (num_perm, 1)
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if 1 - (1 - threshold ** r) ** b >= 0.999:
            best = (b, r)
    return best


def signatures(records: Sequence[Record], *, num_perm: int = NUM_PERM,
               progress: Callable[[Iterable], Iterable] | None = None) -> Any:
    """MinHash signatures, one row per record: a (len(records), num_perm) numpy array."""
    import numpy as np
    from datasketch import MinHash

    # MinHash.generator shares one set of permutations; the shingles are hashed already, so
    # `int` passes those hashes through unchanged.
    gen = MinHash.generator((shingle_hashes(r) for r in records), num_perm=num_perm,
                            hashfunc=int)
    if progress is not None:
        gen = progress(gen)
    sigs = [m.hashvalues for m in gen]
    return np.stack(sigs) if sigs else np.zeros((0, num_perm), dtype=np.uint64)


def lsh_buckets(sigs: Any, *, threshold: float = DEFAULT_THRESHOLD) -> list[list[int]]:
    """LSH buckets holding more than one row (members ascending); banding per lsh_params.

    Same banding as datasketch's MinHashLSH, done per band with one np.unique over all rows:
    MinHashLSH inserts row by row in Python (~50 us per row at 16 bands), which alone would
    eat most of the 2,000 rows/s budget.
    """
    import numpy as np

    num_perm = sigs.shape[1]
    bands, rows = lsh_params(threshold, num_perm)
    buckets: list[list[int]] = []
    for k in range(bands):
        band = np.ascontiguousarray(sigs[:, k * rows:(k + 1) * rows])
        keys = band.view(np.dtype((np.void, band.dtype.itemsize * rows))).ravel()
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        multi = np.nonzero(counts[inverse] > 1)[0]  # ascending row order
        groups: dict[int, list[int]] = {}
        for i in multi.tolist():
            groups.setdefault(int(inverse[i]), []).append(i)
        buckets.extend(groups.values())
    return buckets


class _Shingles:
    """Exact shingle sets, computed only for rows that LSH names as candidates."""

    def __init__(self, records: Sequence[Record]):
        self.records = records
        self.cache: dict[int, set[int]] = {}

    def __getitem__(self, i: int) -> set[int]:
        if i not in self.cache:
            self.cache[i] = set(shingle_hashes(self.records[i]))
        return self.cache[i]


def near_duplicates(records: Sequence[Record], *, threshold: float = DEFAULT_THRESHOLD,
                    num_perm: int = NUM_PERM,
                    progress: Callable[[Iterable], Iterable] | None = None
                    ) -> dict[int, tuple[int, float]]:
    """{index of a near-duplicate: (index of the earlier kept row, exact shingle Jaccard)}.

    Greedy in input order: a row is compared only with rows already kept, so the first row of
    each cluster is kept and every row named as its duplicate really is within the threshold.
    """
    buckets = lsh_buckets(signatures(records, num_perm=num_perm, progress=progress),
                          threshold=threshold)
    of_row: dict[int, list[int]] = {}
    for b, members in enumerate(buckets):
        for i in members:
            of_row.setdefault(i, []).append(b)
    kept_in: dict[int, list[int]] = {}
    sets = _Shingles(records)
    dups: dict[int, tuple[int, float]] = {}
    for i in sorted(of_row):
        best: tuple[int, float] | None = None
        for j in sorted({j for b in of_row[i] for j in kept_in.get(b, ())}):
            sim = jaccard(sets[i], sets[j])
            if sim >= threshold:
                best = (j, sim)
                break
        if best is None:
            for b in of_row[i]:
                kept_in.setdefault(b, []).append(i)
        else:
            dups[i] = best
    return dups


def duplicate_clusters(records: Sequence[Record], *, threshold: float = DEFAULT_THRESHOLD,
                       num_perm: int = NUM_PERM, near: bool = True,
                       progress: Callable[[Iterable], Iterable] | None = None) -> list[int]:
    """Cluster id per record: connected components of exact and near-duplicate pairs.

    Transitive on purpose (A~B, B~C puts A, B, C together): a split that keeps these components
    on one side can never leak a near-copy of a test row into training.
    """
    parent = list(range(len(records)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for dup, first in exact_duplicates(records).items():
        union(dup, first)
    if near and len(records) > 1:
        sets = _Shingles(records)
        sigs = signatures(records, num_perm=num_perm, progress=progress)
        for members in lsh_buckets(sigs, threshold=threshold):
            for n, i in enumerate(members):
                for j in members[:n]:
                    if find(i) != find(j) and jaccard(sets[i], sets[j]) >= threshold:
                        union(i, j)
    return [find(i) for i in range(len(records))]


@dataclass
class Stats:
    """Dataset statistics for the check summary."""

    rows: int
    share_with_input: float | None
    first_words: list[tuple[str, int]]
    chars_p50: int
    chars_max: int


def first_word(record: Record) -> str | None:
    """Lower-cased first word of the first user turn (a cheap diversity signal)."""
    if record.messages is None:
        return None
    for m in record.messages:
        if m["role"] == "user":
            words = _WORD.findall(m["content"][:200])
            return words[0].lower() if words else None
    return None


def percentile(values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]


def dataset_stats(records: Sequence[Record], *, top: int = 10) -> Stats:
    """Row count, share of Alpaca rows with `input`, most common first words, char lengths."""
    alpaca = [r for r in records if r.meta.get("format") == "alpaca"]
    share = (sum(1 for r in alpaca if r.meta.get("has_input")) / len(alpaca)) if alpaca else None
    words = Counter(w for w in map(first_word, records) if w)
    lengths = [len(record_text(r)) for r in records] or [0]
    return Stats(rows=len(records), share_with_input=share, first_words=words.most_common(top),
                 chars_p50=percentile(lengths, 50), chars_max=max(lengths))
