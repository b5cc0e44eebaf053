"""Curation on records: exact and near-duplicate detection (MinHash/LSH) and dataset statistics.

Functions here never mutate their input; they return indices, clusters or new records.

Near-duplicates: word 3-gram shingles of the normalised conversation, 64-permutation MinHash,
MinHashLSH at the Jaccard threshold. 64 permutations (not datasketch's 128) halve hashing cost;
the LSH banding at 0.8 still catches pairs above ~0.85 with >99% probability, and every candidate
pair is confirmed against the threshold with the MinHash estimate. Shingles are hashed with xxh32
(~2.5x faster than datasketch's default sha1) and MinHashes are built in bulk with shared
permutations, which is where datasketch spends most of its time otherwise.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from tuneloop.data.records import Record

NUM_PERM = 64
SHINGLE_WORDS = 3
DEFAULT_THRESHOLD = 0.8

_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def normalize(text: str) -> str:
    """Lower-case and collapse whitespace (what 'exact duplicate' compares)."""
    return _WS.sub(" ", text).strip().lower()


def record_text(record: Record) -> str:
    """The whole record as one string: turns as 'role: content' lines, or the raw text."""
    if record.messages is None:
        return record.text or ""
    return "\n".join(f"{m['role']}: {m['content']}" for m in record.messages)


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


def minhashes(records: Sequence[Record], *, num_perm: int = NUM_PERM,
              progress: Callable[[Iterable], Iterable] | None = None) -> list:
    """One LeanMinHash per record, built in bulk (shared permutations, xxh32 shingle hashes)."""
    import xxhash
    from datasketch import LeanMinHash, MinHash

    sets = (shingles(record_text(r)) for r in records)
    gen = MinHash.generator(sets, num_perm=num_perm, hashfunc=xxhash.xxh32_intdigest)
    if progress is not None:
        gen = progress(gen)
    return [LeanMinHash(m) for m in gen]


def _lsh(threshold: float, num_perm: int):
    from datasketch import MinHashLSH

    return MinHashLSH(threshold=threshold, num_perm=num_perm)


def near_duplicates(records: Sequence[Record], *, threshold: float = DEFAULT_THRESHOLD,
                    num_perm: int = NUM_PERM, hashes: list | None = None,
                    progress: Callable[[Iterable], Iterable] | None = None
                    ) -> dict[int, tuple[int, float]]:
    """{index of a near-duplicate: (index of the earlier kept row, estimated Jaccard)}.

    Greedy in input order: a row is compared only with rows already kept, so the first row of
    each cluster is kept and every row named as its duplicate really is within the threshold.
    """
    hashes = hashes if hashes is not None else minhashes(records, num_perm=num_perm,
                                                         progress=progress)
    lsh = _lsh(threshold, num_perm)
    dups: dict[int, tuple[int, float]] = {}
    for i, mh in enumerate(hashes):
        best: tuple[int, float] | None = None
        for j in lsh.query(mh):
            sim = mh.jaccard(hashes[j])
            if sim >= threshold and (best is None or j < best[0]):
                best = (j, sim)
        if best is None:
            lsh.insert(i, mh, check_duplication=False)
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
        hashes = minhashes(records, num_perm=num_perm, progress=progress)
        lsh = _lsh(threshold, num_perm)
        for i, mh in enumerate(hashes):
            for j in lsh.query(mh):
                if mh.jaccard(hashes[j]) >= threshold:
                    union(i, j)
            lsh.insert(i, mh, check_duplication=False)
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
