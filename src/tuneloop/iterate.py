"""One round of failure-driven iteration: failed cases → targeted rows → new data → train → eval.

Given an evaluation (a suite variant's cases.jsonl, or compare.json and the variant to improve),
`run_round`:

1. finds the round it belongs to and starts from the loop's *current* round — its best so far
   (a round that broke more cases than it fixed never becomes current, docs/iterate.md);
2. reads that round's failing cases and groups them: by what failed (tags + failed check
   names), then by the similarity of their questions (word overlap);
3. for each failing case, picks the document chunk (or seed row) that holds its fact — word
   overlap with the question and the values its checks look for — and asks the generator for
   several rows about that one fact, asked in different ways (`synth.docs.generate_from_chunks`
   with a focus naming the topic and the checked value; the suite's questions as texts to
   avoid). Answers get the house style the earlier rounds' rows share (a common prefix and
   sign-off). Rows sharing a 13-gram with the suite are dropped and counted (R16). A round with
   no new row stops here, before any training, and says why;
4. trains: `continue` (the default) carries on from the current round's run — the same LoRA
   adapter, or the same full weights — on the new rows plus a seeded replay sample of the
   earlier rounds' rows (`replay` × the new rows), so what round N-1 taught is rehearsed while
   the new facts are learned; `retrain` trains the config's base model on the union of all rows;
5. re-evaluates the suite and gives the round its verdict against its parent: cases fixed and
   broken, pass rates with 95 % Wilson intervals, the exact McNemar p-value; recorded in
   round.json and in the index (`index.record_round`) with a pointer to its parent.

Everything a round writes lives under `LOOP/round-NNN/`: targets.json, synth/, data/, run/,
evals/, round.json. The loop directory is the loop's identity in the index.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tuneloop.data.check import load_clean_records
from tuneloop.data.contamination import contamination_report
from tuneloop.data.jsonl import read_jsonl_objects
from tuneloop.errors import DataError, UsageError
from tuneloop.eval.contamination import suite_items
from tuneloop.eval.stats import format_interval, format_p, paired_verdict
from tuneloop.eval.suite import Suite, load_suite
from tuneloop.eval.suite_run import run_suite
from tuneloop.index import best_round, list_rounds, record_round
from tuneloop.report.build import write_report
from tuneloop.synth.docs import Chunk, DocsOptions, chunk_documents, generate_from_chunks
from tuneloop.train import load_config, train

STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "has", "have", "how", "i", "in", "is", "it", "its", "of", "on", "or", "our", "the", "their", "there", "this", "to", "was", "we", "what", "when", "where", "which", "who", "whom", "whose", "why", "will", "with", "you", "your", "should", "must", "may", "many", "much", "long", "often", "after", "before", "into", "about", "any", "one", "two"])
SIMILAR = 0.3  # word-set Jaccard at which two failing questions join one group
CHUNKS_PER_FAILURE = 1
# Rows asked per failed fact: one wording per fact was not enough for a question put in other
# words (docs/iterate.md has the measurement).
QUESTIONS_PER_FAILURE = 6
# Replayed rows of earlier rounds per new row; None = every earlier row. Measured on the demo
# (docs/iterate.md): replaying all of round 1 gave the most fixed and the fewest broken cases.
REPLAY: float | None = None
RECIPES = ("continue", "retrain")
# Rows per passing case's fact (new wordings), so a round rehearses what already passes.
PROTECT = 2
STYLE_SHARE = 0.9  # share of earlier answers that must carry a prefix/sign-off for it to count


@dataclass
class Failure:
    """One failing case: its question, tags, the checks it failed and what it answered."""

    id: str
    question: str
    tags: list[str]
    failed_checks: list[str]
    output: str
    values: list[str] = field(default_factory=list)  # what the failed checks looked for


@dataclass
class FailureGroup:
    """Failing cases with the same failed checks/tags and similar questions."""

    key: str
    cases: list[Failure]
    topics: list[str]


@dataclass
class RoundResult:
    """What one round did: where everything is, and the pass rates before and after."""

    loop: Path
    round: int
    parent_round: int
    groups: list[FailureGroup]
    targeted: list[str]
    chunks: int
    synth: dict[str, Any]
    new_rows: int
    dropped_contaminated: int
    data: Path
    run_dir: Path
    evals: Path
    pass_rate_before: float
    pass_rate_after: float
    flipped_to_pass: list[str]
    flipped_to_fail: list[str]
    verdict: str = "no change"  # improved | no change | regression (against the parent)
    significance: dict[str, Any] = field(default_factory=dict)  # PairedVerdict.to_json()
    current_round: int = 0  # the loop's current (best) round after this one
    recipe: str = "continue"
    replayed_rows: int = 0
    style: dict[str, str] = field(default_factory=dict)
    report: Path | None = None
    suite_result: Any = field(default=None, repr=False)  # round N's SuiteResult (not saved)

    def to_json(self) -> dict[str, Any]:
        """Plain dict (round.json)."""
        data = {k: v for k, v in asdict(self).items() if k != "suite_result"}
        for key in ("loop", "data", "run_dir", "evals", "report"):
            data[key] = None if data[key] is None else str(data[key])
        return data


def content_words(text: str) -> set[str]:
    """Lower-cased words of `text` minus stop words (what questions and chunks are matched on)."""
    return {w for w in re.findall(r"[a-z0-9][a-z0-9'-]*", text.lower()) if w not in STOPWORDS}


def _cases_file(path: Path) -> Path:
    return path / "cases.jsonl" if path.is_dir() else path


def read_results(path: str | Path, variant: str | None = None
                 ) -> tuple[Path, dict[str, bool], list[Failure]]:
    """(cases file, {case id: passed}, failures) of a suite result or a compare.json variant.

    `path`: a cases.jsonl, a suite variant directory holding one, a compare.json or a compare
    directory holding one (then `variant`, default the last compared variant: the treatment).
    """
    p = Path(path)
    compare = p / "compare.json" if p.is_dir() else p
    if compare.name == "compare.json" and compare.is_file():
        data = json.loads(compare.read_text(encoding="utf-8"))
        names = list(data.get("variants", {}))
        variant = variant or (names[-1] if names else None)
        if variant not in names:
            raise UsageError(f"variant {variant!r} is not in the comparison", where=str(compare),
                             fix=f"pass --variant with one of: {', '.join(names)}")
        cases_path = compare.parent / data["variants"][variant].get("dir", variant) / "cases.jsonl"
        rows = [{"id": c["id"], "tags": c.get("tags", []), "prompt": c.get("prompt", ""),
                 **c["results"][variant]} for c in data.get("cases", [])]
    else:
        cases_path = _cases_file(p)
        if not cases_path.is_file():
            raise UsageError("no evaluation result here", where=str(p),
                             fix="pass a suite result (cases.jsonl or its directory) or a "
                             "compare.json from `tuneloop eval compare`")
        rows = [row for _, row in read_jsonl_objects(cases_path)]
    passed: dict[str, bool] = {}
    failures: list[Failure] = []
    for row in rows:
        prompt = row.get("prompt", "")
        if isinstance(prompt, list):  # cases.jsonl keeps the messages
            users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
            prompt = users[-1] if users else ""
        passed[row["id"]] = bool(row["passed"])
        if row["passed"]:
            continue
        bad = [c for c in row.get("checks", []) if not c.get("passed")]
        failures.append(Failure(
            id=row["id"], question=str(prompt), tags=list(row.get("tags", [])),
            failed_checks=sorted({c["name"] for c in bad}), output=row.get("output", ""),
            values=[]))
    return cases_path, passed, failures


VALUE_CHECKS = ("icontains", "contains", "equals", "exact")


def add_check_values(failures: Sequence[Failure], suite: Suite) -> None:
    """Fill each failure's `values` with what its failed checks look for (from the suite: the
    results keep only check names), so targeting can find the chunk that states the fact."""
    cases = {c.id: c for c in suite.cases}
    for f in failures:
        case = cases.get(f.id)
        if case is None:
            continue
        f.values = [str(c.value) for c in case.checks if c.name in f.failed_checks
                    and c.name in VALUE_CHECKS and isinstance(c.value, (str, int, float))]


def passing_targets(passed: dict[str, bool], suite: Suite) -> list[Failure]:
    """The passing cases as targets to protect: their questions and every checked value."""
    out = []
    for case in suite.cases:
        if not passed.get(case.id):
            continue
        values = [str(c.value) for c in case.checks
                  if c.name in VALUE_CHECKS and isinstance(c.value, (str, int, float))]
        out.append(Failure(id=case.id, question=case.user_prompt, tags=list(case.tags),
                           failed_checks=[], output="", values=values))
    return out


def group_failures(failures: Sequence[Failure], similar: float = SIMILAR) -> list[FailureGroup]:
    """Group by (tags, failed checks), then single-link by question word overlap (Jaccard)."""
    by_key: dict[str, list[Failure]] = {}
    for f in failures:
        key = f"tags={','.join(sorted(f.tags)) or '-'} failed={','.join(f.failed_checks) or '-'}"
        by_key.setdefault(key, []).append(f)
    groups: list[FailureGroup] = []
    for key, cases in by_key.items():
        words = [content_words(f.question) for f in cases]
        clusters: list[list[int]] = []
        for i in range(len(cases)):
            joined = [c for c in clusters if any(_jaccard(words[i], words[j]) >= similar
                                                 for j in c)]
            merged = [i] + [j for c in joined for j in c]
            clusters = [c for c in clusters if c not in joined] + [sorted(merged)]
        for c in sorted(clusters):
            members = [cases[j] for j in c]
            common = set.intersection(*(words[j] for j in c)) if len(c) > 1 else words[c[0]]
            groups.append(FailureGroup(key=key, cases=members, topics=sorted(common)[:8]))
    return groups


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def seed_chunks(paths: Sequence[str | Path]) -> list[Chunk]:
    """Seed rows as chunks (one row's user + assistant text each) for grounded generation."""
    chunks = []
    for rec in load_clean_records([str(p) for p in paths]):
        text = "\n".join(m["content"] for m in rec.messages or []) or (rec.text or "")
        chunks.append(Chunk(document=rec.where, index=len(chunks), start=0, end=len(text),
                            text=text, heading=""))
    return chunks


def target_chunks(chunks: Sequence[Chunk], failures: Sequence[Failure],
                  per_failure: int = CHUNKS_PER_FAILURE
                  ) -> tuple[list[Chunk], dict[str, list[str]], dict[str, int]]:
    """The chunks that best match each failure (question words + checked values), in order.

    Returns the chosen chunks and, per chunk key, the topic words that matched (the focus) and
    how many failures point at it.
    """
    chunk_words = [content_words(c.text) for c in chunks]
    chosen: dict[int, set[str]] = {}
    hits: dict[int, int] = {}
    for f in failures:
        want = content_words(f.question) | {w for v in f.values for w in content_words(v)}
        values = [v.lower() for v in f.values]
        scored = []
        for k, c in enumerate(chunks):
            hit = want & chunk_words[k]
            # a chunk stating a checked value outright is the best evidence of the fact
            bonus = sum(3 for v in values if v and v in c.text.lower())
            if hit or bonus:
                scored.append((len(hit) + bonus, -k, k, hit))
        for _, _, k, hit in sorted(scored, reverse=True)[:per_failure]:
            chosen.setdefault(k, set()).update(hit)
            hits[k] = hits.get(k, 0) + 1
    ordered = sorted(chosen)
    return ([chunks[k] for k in ordered],
            {f"{chunks[k].document}#{chunks[k].index}": sorted(chosen[k]) for k in ordered},
            {f"{chunks[k].document}#{chunks[k].index}": hits[k] for k in ordered})


def show_groups(groups: Sequence[FailureGroup], console: Any, limit: int = 8) -> None:
    """Print the failure groups (what the round targets), one line each, the first `limit`."""
    for g in groups[:limit]:
        ids = ", ".join(f.id for f in g.cases[:6]) + (" …" if len(g.cases) > 6 else "")
        console.print(f"  - {g.key} ({len(g.cases)}): {ids}  [dim]topics: "
                      f"{', '.join(g.topics[:5]) or '-'}[/]")
    if len(groups) > limit:
        console.print(f"  … and {len(groups) - limit} more group(s) (targets.json lists all)")


def clean_new_rows(rows: list[dict[str, Any]], suite: Suite, n: int = 13
                   ) -> tuple[list[dict[str, Any]], int]:
    """Rows that share no n-gram with any suite case (prompt + reference); the count dropped."""
    items = suite_items(suite, suite.name)
    kept = []
    for row in rows:
        text = "\n".join(m["content"] for m in row["messages"])
        if contamination_report([text], items, n=n).n_contaminated == 0:
            kept.append(row)
    return kept, len(rows) - len(kept)


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _sha256(path: str) -> str | None:
    p = Path(path)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None


def _loop_rounds(loop: Path) -> list[dict[str, Any]]:
    return list_rounds(loop)


def answer_style(rows: Sequence[Any]) -> dict[str, str]:
    """The prefix and sign-off (suffix) that nearly all earlier answers share, word-aligned.

    A house style ("Answer: … — Tide Desk") is what the trained model does; rows a generator
    writes in plain sentences are put in it, so a round never teaches two styles.
    """
    answers = [m["content"] for r in rows for m in (r.messages or []) if m["role"] == "assistant"]
    if len(answers) < 3:
        return {"prefix": "", "suffix": ""}

    def common(texts: list[str], reverse: bool) -> str:
        split = [t.split(" ")[::-1] if reverse else t.split(" ") for t in texts]
        out: list[str] = []
        for k in range(min(map(len, split)) - 1):  # never the whole answer
            counts: dict[str, int] = {}
            for words in split:
                counts[words[k]] = counts.get(words[k], 0) + 1
            word, n = max(counts.items(), key=lambda kv: kv[1])
            if n < STYLE_SHARE * len(texts):
                break
            out.append(word)
            split = [w for w in split if w[k] == word]
        return " ".join(out[::-1] if reverse else out)

    prefix, suffix = common(answers, False), common(answers, True)
    return {"prefix": prefix + " " if prefix else "", "suffix": " " + suffix if suffix else ""}


def apply_style(answer: str, style: dict[str, str]) -> str:
    """`answer` with the house prefix and sign-off, each added only where it is missing."""
    text = answer.strip()
    if style["prefix"] and not text.startswith(style["prefix"].strip()):
        text = style["prefix"] + text
    if style["suffix"] and not text.endswith(style["suffix"].strip()):
        text = text + style["suffix"]
    return text


def replay_sample(files: Sequence[str], k: int | None, seed: int) -> list[dict[str, Any]]:
    """`k` rows drawn (seeded, without replacement) from the earlier rounds' training files;
    every row (in a seeded order) when `k` is None."""
    pool = [{"messages": r.messages, "meta": {"replay": r.where}}
            for r in load_clean_records([f for f in files if Path(f).is_file()])
            if r.messages]
    return random.Random(seed).sample(pool, len(pool) if k is None else min(k, len(pool)))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "case"


def targeted_rows(failures: Sequence[Failure], chunks: Sequence[Chunk], generator: Any,
                  out: Path, *, judge: Any, options: DocsOptions, avoid: Sequence[str],
                  round_no: int, style: dict[str, str]
                  ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Rows for each failure's fact, from the chunk that holds it: (rows, per-case chunks, stats).

    One synth run per failing case (LOOP/round-NNN/synth/NNN-ID/), so each row knows the case it
    targets; rows carry the round, the case ids, the chunk and the house style.
    """
    from tuneloop.synth.run import open_generator

    # open a spec once (a local model must not load again for every case), with one cache for
    # the round's synth runs: an interrupted round resends nothing it already got
    out.mkdir(parents=True, exist_ok=True)
    gen = open_generator(generator, out)
    jgen = None if judge is None else open_generator(judge, out)
    rows: list[dict[str, Any]] = []
    case_chunks: dict[str, Any] = {}
    totals: dict[str, Any] = {"accepted": 0, "rejected": {}, "requests": 0, "runs": 0}
    for k, f in enumerate(failures, 1):
        picked, topics, _ = target_chunks(chunks, [f])
        if not picked:
            case_chunks[f.id] = None
            continue
        chunk = picked[0]
        key = f"{chunk.document}#{chunk.index}"
        case_chunks[f.id] = {"key": key, "text": chunk.text}
        words = ", ".join(topics[key][:8])
        focus = f"facts about {words}" if words else "the fact a reader would need"
        if f.values:
            focus += f". The answer states: {'; '.join(f.values)}"
        stats = generate_from_chunks([chunk], gen, out / f"{k:03d}-{_slug(f.id)}", judge=jgen,
                                     options=options, focus=focus, avoid=avoid)
        totals["runs"] += 1
        totals["accepted"] += stats.get("accepted", 0)
        totals["requests"] += stats.get("requests", {}).get("total", 0)
        for reason, n in (stats.get("rejected") or {}).items():
            totals["rejected"][reason] = totals["rejected"].get(reason, 0) + n
        for _, row in read_jsonl_objects(out / f"{k:03d}-{_slug(f.id)}" / "train.jsonl"):
            msgs = [dict(m) for m in row["messages"]]
            for m in msgs:
                if m["role"] == "assistant":
                    m["content"] = apply_style(m["content"], style)
            meta = {**row.get("meta", {}), "round": round_no, "targets": [f.id], "chunk": key}
            rows.append({"messages": msgs, "meta": meta})
    return rows, case_chunks, totals


def _no_rows_error(totals: dict[str, Any], dropped: int, n_failures: int, where: Path
                   ) -> DataError:
    reasons = dict(totals["rejected"])
    if dropped:
        reasons["shares_13_gram_with_suite"] = dropped
    counted = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "nothing generated"
    return DataError(
        f"this round has no new row for its {n_failures} failing case(s) ({counted}); "
        "retraining on the same data would teach nothing, so the round stops before training",
        where=str(where),
        fix="use a stronger generator (--generator openai:URL#model, or --generator extractive "
        "for documents with plain statements), pass documents that state the facts, or add "
        "rows people wrote (`tuneloop review`, then --reviewed FILE)")


def run_round(result: str | Path, *, suite: str | Path | Suite, config: str | Path,
              generator: Any, loop: str | Path, documents: Sequence[str | Path] = (),
              seeds: Sequence[str | Path] = (), variant: str | None = None,
              judge: Any = None, options: DocsOptions | None = None,
              overrides: Sequence[str] = (), run_dir: str | Path | None = None,
              progress: bool = True, console: Any = None, recipe: str = "continue",
              replay: float | None = REPLAY, train_overrides: Sequence[str] = (),
              reviewed: Sequence[dict[str, Any]] = (), seed: int = 0,
              protect: int = PROTECT) -> RoundResult:
    """One iteration round on `result` (round N-1); returns round N's result (see module doc).

    `config` is the training config of round 1 (its data.train files are round 1's data);
    `overrides` are `--set` style overrides applied to it each round (the demo uses them to put
    its split files in); `run_dir` is round 1's run, when known. `recipe`: "continue" (the
    current round's run trained further on new + replayed rows) or "retrain" (the base model on
    every row). `train_overrides`: extra overrides for this round's training only (e.g. a lower
    learning rate). `reviewed`: rows people wrote or accepted (`tuneloop review export`),
    added to the round's new rows after the same 13-gram scan. `protect`: rows per *passing*
    case's fact, in new wordings, so the round rehearses what already works in the ways people
    ask rather than only in round 1's phrasings (0 = none).
    """
    from rich.console import Console

    if recipe not in RECIPES:
        raise UsageError(f"unknown round recipe {recipe!r}", fix=f"use one of {', '.join(RECIPES)}")
    if replay is not None and replay < 0:
        raise UsageError(f"--replay must be ≥ 0, got {replay}")
    console = console or Console()
    loop = Path(loop).resolve()
    suite_obj = suite if isinstance(suite, Suite) else load_suite(suite)
    if not documents and not seeds:
        raise UsageError("iterate needs something to ground new rows in",
                         fix="pass --docs FILE... (documents) and/or --seeds FILE... (seed rows)")
    cases_path, _, _ = read_results(result, variant)
    base_config = load_config(config, list(overrides))
    rounds = _loop_rounds(loop)
    given = next((r for r in rounds if Path(r["eval_path"]) == cases_path.resolve()), None)
    if given is None:
        if rounds:
            raise UsageError("this result is not a round of this loop", where=str(cases_path),
                             fix=f"pass the latest round's evals ({rounds[-1]['eval_path']}) "
                             "or a new --out")
        first = read_results(result, variant)[1]
        record_round(loop, 1, parent_id=None, run_dir=run_dir, eval_path=cases_path,
                     data_paths=[str(p) for p in base_config.data.train],
                     pass_rate=sum(first.values()) / len(first) if first else 0.0,
                     n_cases=len(first))
        rounds = _loop_rounds(loop)
        given = rounds[0]
    parent = best_round(rounds)
    if parent["id"] != given["id"]:
        console.print(f"round {given['round']} is not the loop's best "
                      f"({given.get('verdict') or 'no better than'} round {parent['round']}); "
                      f"round {rounds[-1]['round'] + 1} starts from round {parent['round']} "
                      f"({parent['pass_rate']:.1%})")
    parent_cases = Path(parent["eval_path"])
    _, before, failures = read_results(parent_cases)
    known = {c.id for c in suite_obj.cases}
    if not set(before) <= known:
        raise UsageError(f"the result has cases the suite lacks ({sorted(set(before) - known)[:3]})",
                         where=str(parent_cases), fix="pass the suite this result was run on")
    if not failures:
        raise UsageError("no failing case in this result: nothing to target",
                         where=str(parent_cases), fix="evaluate on a harder suite")
    add_check_values(failures, suite_obj)
    n = rounds[-1]["round"] + 1
    out = loop / f"round-{n:03d}"
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"round {n} already has files", where=str(out),
                         fix="remove that directory (an interrupted round), or pass a new --out")

    groups = group_failures(failures)
    console.print(f"round {n} (from round {parent['round']}): {len(failures)} failing case(s) "
                  f"of {len(before)} in {len(groups)} group(s)")
    show_groups(groups, console)

    chunks: list[Chunk] = []
    opt = options or DocsOptions(chunk_words=120, overlap=20, questions=QUESTIONS_PER_FAILURE)
    opt = replace(opt, progress=False)  # one bar per case would scroll; the summary line counts
    if documents:
        chunks += chunk_documents(documents, opt.chunk_words, opt.overlap)
    if seeds:
        chunks += seed_chunks(seeds)
    parent_files = json.loads(parent["data_json"])
    earlier = load_clean_records([f for f in parent_files if Path(f).is_file()])
    style = answer_style(earlier)
    out.mkdir(parents=True, exist_ok=True)
    # The suite's questions are avoided (ROUGE-L) by synth; the 13-gram scan below is the proof.
    avoid = [c.user_prompt for c in suite_obj.cases]
    synth_rows, case_chunks, totals = targeted_rows(
        failures, chunks, generator, out / "synth", judge=judge, options=opt, avoid=avoid,
        round_no=n, style=style)
    n_targeted = len(synth_rows)
    if protect > 0:
        kept, _, kept_totals = targeted_rows(
            passing_targets(before, suite_obj), chunks, generator, out / "synth-protect",
            judge=judge, options=replace(opt, questions=protect), avoid=avoid, round_no=n,
            style=style)
        for row in kept:
            row["meta"]["protects"] = row["meta"].pop("targets")
        synth_rows += kept
        totals["protect_accepted"] = kept_totals["accepted"]
    if not any(case_chunks.values()):
        raise DataError("no document chunk or seed row matches the failing cases",
                        where=", ".join(map(str, [*documents, *seeds])),
                        fix="pass documents that state the facts the suite asks about")
    targets = {"round": n, "parent_round": parent["round"], "result": str(parent_cases),
               "groups": [asdict(g) for g in groups], "case_chunks": case_chunks,
               "questions_per_case": opt.questions, "style": style}
    (out / "targets.json").write_text(json.dumps(targets, indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    human = [{"messages": r["messages"], "meta": {**r.get("meta", {}), "round": n}}
             for r in reviewed]
    new_rows, dropped = clean_new_rows([*synth_rows, *human], suite_obj)
    console.print(f"  {sum(1 for c in case_chunks.values() if c)} case(s) matched to a chunk, "
                  f"{n_targeted} rows for them"
                  + (f", {totals.get('protect_accepted', 0)} for the {sum(before.values())} "
                     "passing case(s)" if protect > 0 else "")
                  + (f", {len(human)} reviewed" if human else "")
                  + f", {dropped} dropped by the 13-gram scan, {len(new_rows)} added")
    if not any("protects" not in r["meta"] for r in new_rows):  # protecting alone teaches nothing
        raise _no_rows_error(totals, dropped, len(failures), out)

    # New data version: the parent's training files (untouched) + a file of the new rows.
    data_path = out / "data" / "new_rows.jsonl"
    _write_rows(data_path, new_rows)
    files = [*parent_files, str(data_path)]
    replayed: list[dict[str, Any]] = []
    if recipe == "retrain":
        train_files = files
        start: Any = base_config.model
    else:
        start = parent["run_dir"] or (run_dir if parent["round"] == 1 else None)
        if not start:
            # round 1 was a model evaluated as it is (no run of ours): continue from the config's
            start = base_config.model
            console.print(f"  round {parent['round']} has no run directory: continuing from the "
                          f"config's model {start} (pass --run RUN if another run produced it)")
        k = None if replay is None else round(replay * len(new_rows))
        replayed = replay_sample(parent_files, k, seed + n)
        replay_path = out / "data" / "replay.jsonl"
        _write_rows(replay_path, replayed)
        train_files = [str(data_path), str(replay_path)] if replayed else [str(data_path)]
    (out / "data" / "version.json").write_text(json.dumps(
        {"round": n, "files": [{"path": f, "sha256": _sha256(f)} for f in files],
         "new_rows": len(new_rows), "dropped_contaminated": dropped, "recipe": recipe,
         "trained_on": train_files, "replayed_rows": len(replayed)}, indent=2) + "\n",
        encoding="utf-8")

    config_n = load_config(config, [*overrides, f"model={json.dumps(str(start))}",
                                    f"data.train={json.dumps(train_files)}", *train_overrides])
    trained = train(config_n, output_dir=out / "run", progress=progress)
    res, evals_dir = run_suite(suite_obj, str(trained.run_dir), out_dir=out / "evals",
                               variant=f"round-{n}", batch_size=16, progress=progress)
    after = {c.id: c.passed for c in res.cases}
    sig = paired_verdict(before, after)
    verdict = sig.verdict
    record_round(
        loop, n, parent_id=parent["id"], run_dir=trained.run_dir,
        eval_path=evals_dir / "cases.jsonl", data_paths=files,
        pass_rate=res.pass_rate, n_cases=len(res.cases),
        n_fixed=len(sig.fixed), n_broken=len(sig.broken), p_value=sig.p_value, verdict=verdict,
        extra={"targeted": [f.id for f in failures], "new_rows": len(new_rows),
               "dropped_contaminated": dropped, "synth": str(out / "synth"), "recipe": recipe,
               "replayed_rows": len(replayed), "significance": sig.to_json()})
    current = best_round(_loop_rounds(loop))
    result_n = RoundResult(
        loop=loop, round=n, parent_round=parent["round"], groups=groups,
        targeted=[f.id for f in failures], chunks=sum(1 for c in case_chunks.values() if c),
        synth=totals, new_rows=len(new_rows), dropped_contaminated=dropped, data=data_path,
        run_dir=Path(trained.run_dir), evals=evals_dir, pass_rate_before=parent["pass_rate"],
        pass_rate_after=res.pass_rate, flipped_to_pass=sig.fixed, flipped_to_fail=sig.broken,
        verdict=verdict, significance=sig.to_json(), current_round=current["round"],
        recipe=recipe, replayed_rows=len(replayed), style=style, suite_result=res)
    result_n.report = write_loop_report(loop)
    (out / "round.json").write_text(json.dumps(result_n.to_json(), indent=2, ensure_ascii=False)
                                    + "\n", encoding="utf-8")
    return result_n


def verdict_lines(res: RoundResult) -> list[str]:
    """The round's verdict as the CLI and the demo print it."""
    sig = res.significance
    n = sig["n"]
    word = {"improved": "improved", "no change": "no change",
            "regression": "REGRESSION"}[res.verdict]
    lines = [
        f"round {res.round} vs round {res.parent_round}: {word}, "
        f"{sig['delta'] * 100:+.1f} points ({len(res.flipped_to_pass)} fixed, "
        f"{len(res.flipped_to_fail)} broken; exact McNemar {format_p(sig['p_value'])}"
        + (", not significant" if sig["p_value"] >= 0.05 else "") + ")",
        (f"  pass rate {format_interval(sig['passed_before'], n)} → "
         f"{format_interval(sig['passed_after'], n)} (95 % Wilson intervals)"),
    ]
    if res.current_round != res.round:
        lines.append(f"  the loop's current model stays round {res.current_round} "
                     "(the next round starts from it)")
    return lines


def write_loop_report(loop: str | Path, out: str | Path | None = None) -> Path:
    """LOOP/report.html: every round's run and evals, and the rounds side by side."""
    loop = Path(loop)
    rows = list_rounds(loop)
    runs = [r["run_dir"] for r in rows if r["run_dir"] and Path(r["run_dir"]).is_dir()]
    evals = [str(Path(r["eval_path"]).parent) for r in rows if not r["run_dir"]]
    path = Path(out) if out is not None else loop / "report.html"
    write_report(runs, out=path, eval_dirs=evals, rounds_loop=loop)
    return path


__all__ = [
    "Failure",
    "FailureGroup",
    "RoundResult",
    "answer_style",
    "apply_style",
    "best_round",
    "clean_new_rows",
    "group_failures",
    "read_results",
    "replay_sample",
    "run_round",
    "seed_chunks",
    "show_groups",
    "target_chunks",
    "verdict_lines",
    "write_loop_report",
]
