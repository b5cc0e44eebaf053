"""Exact and near-duplicate detection, stats."""

from __future__ import annotations

import random

from tuneloop.data.curate import (
    dataset_stats,
    duplicate_clusters,
    exact_duplicates,
    lsh_params,
    near_duplicates,
    percentile,
)
from tuneloop.data.records import Record

WORDS = [f"word{i}" for i in range(3000)]


def doc(rng: random.Random, n: int = 40) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def rec(answer: str, question: str = "Please answer") -> Record:
    return Record.chat(("user", question), ("assistant", answer))


def test_exact_duplicates_ignore_whitespace_and_case():
    recs = [rec("Hello  World"), rec("hello world"), rec("hello world!"), rec(" HELLO world ")]
    assert exact_duplicates(recs) == {1: 0, 3: 0}


def test_near_duplicates_found_and_distinct_rows_kept():
    rng = random.Random(0)
    base = [doc(rng) for _ in range(60)]
    recs = [rec(t) for t in base]
    # plant near copies: one word changed at the end of a 40-word answer
    planted = {60: 5, 61: 17, 62: 5}
    for src in planted.values():
        words = base[src].split()
        words[-1] = "changed"
        recs.append(rec(" ".join(words)))
    dups = near_duplicates(recs, threshold=0.8)
    assert {k: v[0] for k, v in dups.items()} == planted
    assert all(sim >= 0.8 for _, sim in dups.values())


def test_threshold_is_respected():
    rng = random.Random(1)
    a = doc(rng, 40)
    words = a.split()
    b = " ".join(words[:20] + [f"x{i}" for i in range(20)])  # half the text differs
    assert near_duplicates([rec(a), rec(b)], threshold=0.8) == {}
    assert 1 in near_duplicates([rec(a), rec(b)], threshold=0.2)


def test_clusters_are_transitive_and_include_exact_duplicates():
    rng = random.Random(2)
    a = doc(rng, 100).split()
    b = a[:30] + ["p"] + a[31:]  # a ~ b
    c = b[:70] + ["q"] + b[71:]  # b ~ c
    recs = [rec(" ".join(a)), rec(doc(rng)), rec(" ".join(b)), rec(" ".join(c)),
            rec(" ".join(a).upper())]
    labels = duplicate_clusters(recs, threshold=0.8)
    assert labels[0] == labels[2] == labels[3] == labels[4] != labels[1]


def test_stats():
    recs = [Record.chat(("user", "Explain X"), ("assistant", "a"),
                        meta={"format": "alpaca", "has_input": True}),
            Record.chat(("user", "explain y"), ("assistant", "b"),
                        meta={"format": "alpaca", "has_input": False}),
            Record.chat(("user", "What?"), ("assistant", "c"))]
    stats = dataset_stats(recs)
    assert stats.share_with_input == 0.5
    assert stats.first_words == [("explain", 2), ("what", 1)]
    assert percentile([1, 2, 3, 4, 100], 50) == 3 and percentile(list(range(1, 101)), 95) == 95


def test_lsh_banding_keeps_recall_at_the_threshold():
    """The banding docs/benchmarks.md states: 16 bands x 4 rows at 0.8, recall >= 99.9%."""
    assert lsh_params(0.8, 64) == (16, 4)
    for threshold in (0.5, 0.8, 0.95):
        bands, rows = lsh_params(threshold, 64)
        assert bands * rows <= 64
        assert 1 - (1 - threshold ** rows) ** bands >= 0.999
        # one more row per band would fall below the recall floor
        assert 1 - (1 - threshold ** (rows + 1)) ** (64 // (rows + 1)) < 0.999
