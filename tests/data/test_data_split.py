"""Split: deterministic, near-duplicate clusters on one side, manifest with hashes (R16)."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from data_rows import alpaca

from tuneloop.data.curate import duplicate_clusters
from tuneloop.data.records import Record
from tuneloop.data.split import split_files, split_records
from tuneloop.errors import DataError, UsageError

WORDS = [f"w{i}" for i in range(5000)]


def corpus(seed: int = 0, n: int = 150, families: int = 15) -> list[Record]:
    """n distinct rows, plus `families` groups of 4 near-copies (one word changed each)."""
    rng = random.Random(seed)
    base = [" ".join(rng.choice(WORDS) for _ in range(50)) for _ in range(n)]
    recs = [Record.chat(("user", "Answer this"), ("assistant", t), line=i + 1)
            for i, t in enumerate(base)]
    for f in range(families):
        words = base[f].split()
        for k in range(4):
            variant = words[:10 + k] + [f"v{k}"] + words[11 + k:]
            recs.append(Record.chat(("user", "Answer this"), ("assistant", " ".join(variant)),
                                    line=len(recs) + 1))
    return recs


def test_near_duplicates_never_straddle_the_split():
    """R16: every duplicate cluster is wholly in train or wholly in test."""
    recs = corpus()
    result = split_records(recs, test_size=0.2, seed=3)
    assert len(result.test) == round(len(recs) * 0.2)
    assert len(result.train) + len(result.test) == len(recs)
    test_lines = {r.line for r in result.test}
    for f in range(15):  # the planted families: row f+1 and its 4 variants
        family = [f + 1] + [151 + 4 * f + k for k in range(4)]
        assert len({line in test_lines for line in family}) == 1
    assert result.multi_row_clusters == 15
    assert any(151 + 4 * f in test_lines for f in range(15))  # some family did go to test
    labels = duplicate_clusters(recs)
    for cluster in set(labels):
        sides = {recs[i].line in test_lines for i, c in enumerate(labels) if c == cluster}
        assert len(sides) == 1


def test_split_is_deterministic_and_seed_dependent():
    recs = corpus()
    a = split_records(recs, test_size=0.1, seed=0)
    b = split_records(recs, test_size=0.1, seed=0)
    c = split_records(recs, test_size=0.1, seed=1)
    assert [r.line for r in a.test] == [r.line for r in b.test]
    assert [r.line for r in a.test] != [r.line for r in c.test]
    assert [r.line for r in a.train] == sorted(r.line for r in a.train)  # input order kept


def test_bad_test_size_and_unsplittable_clusters():
    with pytest.raises(UsageError):
        split_records(corpus(n=5, families=0), test_size=5)
    with pytest.raises(UsageError):
        split_records(corpus(n=5, families=0), test_size=0)
    same = [Record.chat(("user", "q"), ("assistant", "same answer"), line=i) for i in range(10)]
    with pytest.raises(DataError, match="no duplicate cluster fits"):
        split_records(same, test_size=0.1)  # one cluster of 10 cannot be split without leaking


def test_split_files_writes_outputs_and_manifest(jsonl, tmp_path):
    path = jsonl([alpaca(i) for i in range(20)] + ["{bad", alpaca(3)])
    out = tmp_path / "split"
    manifest = split_files([path], out, test_size=0.25, seed=0)
    train = (out / "train.jsonl").read_bytes()
    test = (out / "test.jsonl").read_bytes()
    assert manifest["rows"] == {"read": 22, "train": len(train.splitlines()),
                                "test": len(test.splitlines()), "rejected": 1,
                                "skipped_blank_lines": 0}
    assert manifest["rows"]["train"] + manifest["rows"]["test"] == 21
    assert manifest["sha256"]["train.jsonl"] == hashlib.sha256(train).hexdigest()
    assert manifest["sha256"]["test.jsonl"] == hashlib.sha256(test).hexdigest()
    assert manifest["sources"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert json.loads((out / "manifest.json").read_text()) == manifest
    rejects = (out / "rejects.jsonl").read_bytes()
    assert json.loads(rejects)["line"] == 21
    assert manifest["sha256"]["rejects.jsonl"] == hashlib.sha256(rejects).hexdigest()
    # the exact duplicate of row 4 (line 22) sits on the same side as it
    rows = [json.loads(x) for x in train.splitlines()]
    assert (rows.count(Record.chat(("user", alpaca(3)["instruction"]),
                                   ("assistant", alpaca(3)["output"])).to_json()) in (0, 2))
    again = split_files([path], tmp_path / "again", test_size=0.25, seed=0)
    assert again["sha256"] == manifest["sha256"]
    # rerun into the same dir once the bad row is gone: no stale rejects file is left behind
    jsonl([alpaca(i) for i in range(20)] + [alpaca(3)])
    fixed = split_files([path], out, test_size=0.25, seed=0)
    assert "rejects.jsonl" not in fixed["sha256"] and not (out / "rejects.jsonl").exists()
