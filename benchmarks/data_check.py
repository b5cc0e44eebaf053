"""Benchmark: `data check` throughput (rows/s, near-dup on) on generated Alpaca rows.

Prints rows/s for the full check pipeline (load → validate → exact + near dedup → PII → stats)
on N generated rows (default 100k, with planted exact and near duplicates), the target
(2,000 rows/s on 2 cores), and a reference measured in the same run: near-dup detection done the
straightforward datasketch way (MinHash(num_perm=128) per row, sha1, default MinHashLSH).

    .venv/bin/python benchmarks/data_check.py [--rows 100000] [--reference-rows 10000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import tempfile
import time
from pathlib import Path

TARGET_ROWS_PER_S = 2000
VERBS = ["Explain", "Describe", "Write", "List", "Summarise", "Give", "Translate", "Compare",
         "What is", "How do", "Why does", "Classify", "Rewrite", "Suggest", "Name"]
SYLLABLES = ["ka", "lo", "mi", "ne", "ra", "su", "ti", "ve", "do", "pa", "qui", "ze", "ba",
             "ro", "gu", "fe", "an", "el", "or", "is"]


def make_vocab(rng: random.Random, size: int = 20000) -> tuple[list[str], list[float]]:
    """Pseudo-words with cumulative Zipf weights, so common words repeat as in real text."""
    words = sorted({"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 5)))
                    for _ in range(size * 2)})[:size]
    rng.shuffle(words)
    return words, list(itertools.accumulate(1 / (rank + 1) for rank in range(len(words))))


def generate(path: Path, n: int, seed: int = 0) -> dict[str, int]:
    """Write n Alpaca rows (2% exact copies, 2% near copies) to path; returns planted counts."""
    rng = random.Random(seed)
    words, cum_weights = make_vocab(rng)

    def sent(k: int) -> str:
        return " ".join(rng.choices(words, cum_weights=cum_weights, k=k))

    rows: list[dict[str, str]] = []
    planted = {"exact": 0, "near": 0}
    for _ in range(n):
        r = rng.random()
        if rows and r < 0.02:
            src = dict(rng.choice(rows))
            src["output"] = "  " + src["output"].upper()  # equal after case/space normalising
            rows.append(src)
            planted["exact"] += 1
        elif rows and r < 0.04:
            src = dict(rng.choice(rows))
            out = src["output"].split()
            out[rng.randrange(len(out))] = "changed"
            src["output"] = " ".join(out)
            rows.append(src)
            planted["near"] += 1
        else:
            rows.append({"instruction": f"{rng.choice(VERBS)} {sent(rng.randint(4, 14))}.",
                         "input": sent(rng.randint(5, 30)) if rng.random() < 0.4 else "",
                         "output": sent(rng.randint(20, 90)) + "."})
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return planted


def reference_rows_per_s(path: Path, limit: int) -> float:
    """Near-dup only, datasketch defaults: one MinHash(128, sha1) per row + default LSH."""
    from datasketch import MinHash, MinHashLSH

    from tuneloop.data.curate import record_text, shingles
    from tuneloop.data.load import load_records

    records = load_records(path).records[:limit]
    start = time.perf_counter()
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    for i, rec in enumerate(records):
        m = MinHash(num_perm=128)
        m.update_batch(shingles(record_text(rec)))
        lsh.query(m)
        lsh.insert(i, m)
    return len(records) / (time.perf_counter() - start)


def main() -> None:
    """Generate, time the check, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--reference-rows", type=int, default=10_000)
    args = ap.parse_args()

    from tuneloop.data.check import CheckOptions, check_files

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alpaca.jsonl"
        planted = generate(path, args.rows)
        start, cpu0 = time.perf_counter(), time.process_time()
        report = check_files(path, options=CheckOptions(near_dup=True))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
        ref = reference_rows_per_s(path, args.reference_rows)
    rate = report.rows_read / elapsed
    print(f"rows: {report.rows_read}  kept: {len(report.kept)}  rejected: {len(report.rejected)} "
          f"{dict(report.reasons)}  planted: {planted}")
    print(f"data check (near-dup on): {elapsed:.1f} s wall = {rate:,.0f} rows/s; "
          f"{cpu:.1f} s CPU = {report.rows_read / cpu:,.0f} rows/s per core; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"target {TARGET_ROWS_PER_S:,} rows/s: ratio {rate / TARGET_ROWS_PER_S:.2f}x")
    print(f"reference (near-dup alone, datasketch defaults, {args.reference_rows} rows): "
          f"{ref:,.0f} rows/s; full check vs reference: {rate / ref:.2f}x")


if __name__ == "__main__":
    main()
