"""One round of failure-driven iteration: failed cases → targeted rows → new data → train → eval.

Given an evaluation (a suite variant's cases.jsonl, or compare.json and the variant to improve),
`run_round`:

1. reads the failing cases and groups them: first by what failed (tags + failed check names),
   then by the similarity of their questions (word overlap), so a group is "one kind of mistake";
2. picks the document chunks (or seed rows) that hold the facts those failures were about, by
   word overlap with each failing question and the values its checks look for;
3. asks the synth generator for document-grounded question/answer rows about those chunks
   (`synth.docs.generate_from_chunks`, with a focus naming the topics, and the suite's own
   questions as texts to avoid), then drops any new row sharing a 13-gram with the suite (the
   contamination scan; counted in the round's manifest, never silently);
4. writes a new data version (the parent round's training files + the kept rows), retrains from
   the same config, re-evaluates the suite, and records round N in the index with a pointer to
   round N-1 (`index.record_round`).

Everything a round writes lives under `LOOP/round-NNN/`: targets.json, synth/, data/, run/,
evals/. The loop directory is the loop's identity in the index.
"""

from __future__ import annotations

import hashlib
import json
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
from tuneloop.eval.suite import Suite, load_suite
from tuneloop.eval.suite_run import run_suite
from tuneloop.index import list_rounds, record_round
from tuneloop.report.build import write_report
from tuneloop.synth.docs import Chunk, DocsOptions, chunk_documents, generate_from_chunks
from tuneloop.train import load_config, train

STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "has", "have", "how", "i", "in", "is", "it", "its", "of", "on", "or", "our", "the", "their", "there", "this", "to", "was", "we", "what", "when", "where", "which", "who", "whom", "whose", "why", "will", "with", "you", "your", "should", "must", "may", "many", "much", "long", "often", "after", "before", "into", "about", "any", "one", "two"])
SIMILAR = 0.3  # word-set Jaccard at which two failing questions join one group
CHUNKS_PER_FAILURE = 1


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


def run_round(result: str | Path, *, suite: str | Path | Suite, config: str | Path,
              generator: Any, loop: str | Path, documents: Sequence[str | Path] = (),
              seeds: Sequence[str | Path] = (), variant: str | None = None,
              judge: Any = None, options: DocsOptions | None = None,
              overrides: Sequence[str] = (), run_dir: str | Path | None = None,
              progress: bool = True, console: Any = None,
              continue_overrides: Sequence[str] | None = None) -> RoundResult:
    """One iteration round on `result` (round N-1); returns round N's result (see module doc).

    `config` is the training config of round N-1 (its data.train files are round 1's data);
    `overrides` are `--set` style overrides applied to it each round (the demo uses them to put
    its split files in); `run_dir` is round N-1's run, when known, for the index.
    `continue_overrides`: continue from round N-1's run instead of retraining from scratch —
    train only on the new rows, starting from that run's weights, with these extra overrides
    (e.g. `method=full`, a lower learning rate); the data version still lists every file.
    """
    from rich.console import Console

    console = console or Console()
    loop = Path(loop).resolve()
    suite_obj = suite if isinstance(suite, Suite) else load_suite(suite)
    if not documents and not seeds:
        raise UsageError("iterate needs something to ground new rows in",
                         fix="pass --docs FILE... (documents) and/or --seeds FILE... (seed rows)")
    cases_path, before, failures = read_results(result, variant)
    known = {c.id for c in suite_obj.cases}
    if not set(before) <= known:
        raise UsageError(f"the result has cases the suite lacks ({sorted(set(before) - known)[:3]})",
                         where=str(cases_path), fix="pass the suite this result was run on")
    if not failures:
        raise UsageError("no failing case in this result: nothing to target",
                         where=str(cases_path), fix="evaluate on a harder suite")
    add_check_values(failures, suite_obj)

    base_config = load_config(config, list(overrides))
    rounds = _loop_rounds(loop)
    parent = next((r for r in rounds if Path(r["eval_path"]) == cases_path.resolve()), None)
    if parent is None:
        if rounds:
            raise UsageError("this result is not a round of this loop", where=str(cases_path),
                             fix=f"pass the latest round's evals ({rounds[-1]['eval_path']}) "
                             "or a new --out")
        parent_id = record_round(loop, 1, parent_id=None, run_dir=run_dir, eval_path=cases_path,
                                 data_paths=[str(p) for p in base_config.data.train],
                                 pass_rate=sum(before.values()) / len(before), n_cases=len(before))
        parent = next(r for r in _loop_rounds(loop) if r["id"] == parent_id)
    n = parent["round"] + 1
    out = loop / f"round-{n:03d}"
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"round {n} already has files", where=str(out),
                         fix="pass a new --out, or the latest round's result")

    groups = group_failures(failures)
    console.print(f"round {n}: {len(failures)} failing case(s) of {len(before)} "
                  f"in {len(groups)} group(s)")
    show_groups(groups, console)

    chunks: list[Chunk] = []
    opt = options or DocsOptions(chunk_words=120, overlap=20, questions=3)
    if documents:
        chunks += chunk_documents(documents, opt.chunk_words, opt.overlap)
    if seeds:
        chunks += seed_chunks(seeds)
    picked, topics, counts = target_chunks(chunks, failures)
    if not picked:
        raise DataError("no document chunk or seed row matches the failing cases",
                        where=", ".join(map(str, [*documents, *seeds])),
                        fix="pass documents that state the facts the suite asks about")
    focus = "; ".join(", ".join(t) for t in topics.values() if t)
    # a chunk several failures point at gets a question for each of them (a copy: the caller's
    # options stay as given)
    opt = replace(opt, questions=max(opt.questions, *counts.values()), progress=progress)
    targets = {"round": n, "parent_round": parent["round"], "result": str(cases_path),
               "groups": [asdict(g) for g in groups], "chunks": topics,
               "failures_per_chunk": counts, "questions_per_chunk": opt.questions}
    out.mkdir(parents=True, exist_ok=True)
    (out / "targets.json").write_text(json.dumps(targets, indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    # The suite's questions are avoided (ROUGE-L) by synth; the 13-gram scan below is the proof.
    avoid = [c.user_prompt for c in suite_obj.cases]
    stats = generate_from_chunks(picked, generator, out / "synth", judge=judge, options=opt,
                                 focus=f"facts about {focus}" if focus else None, avoid=avoid)
    synth_file = out / "synth" / "train.jsonl"
    synth_rows = [row for _, row in read_jsonl_objects(synth_file)] if synth_file.is_file() else []
    new_rows, dropped = clean_new_rows(synth_rows, suite_obj)
    console.print(f"  {len(picked)} chunk(s) targeted, {stats.get('accepted', 0)} rows generated, "
                  f"{dropped} dropped by the 13-gram scan, {len(new_rows)} added")

    # New data version: the parent's training files (untouched) + a file of the new rows.
    parent_files = json.loads(parent["data_json"])
    data_path = out / "data" / "new_rows.jsonl"
    _write_rows(data_path, [{"messages": r["messages"], "meta": r.get("meta", {})}
                            for r in new_rows])
    files = [*parent_files, str(data_path)]
    (out / "data" / "version.json").write_text(json.dumps(
        {"round": n, "files": [{"path": f, "sha256": _sha256(f)} for f in files],
         "new_rows": len(new_rows), "dropped_contaminated": dropped}, indent=2) + "\n",
        encoding="utf-8")

    if continue_overrides is None:
        train_overrides = [*overrides, f"data.train={json.dumps(files)}"]
    else:
        start = parent["run_dir"] or run_dir
        if not start:
            raise UsageError("continuing needs the previous round's run directory",
                             fix="pass --run RUN (the run that produced the result)")
        train_overrides = [*overrides, f"model={json.dumps(str(start))}",
                           f"data.train={json.dumps([str(data_path)])}", *continue_overrides]
    config_n = load_config(config, train_overrides)
    trained = train(config_n, output_dir=out / "run", progress=progress)
    res, evals_dir = run_suite(suite_obj, str(trained.run_dir), out_dir=out / "evals",
                               variant=f"round-{n}", batch_size=16)  # `eval suite`'s default
    after = {c.id: c.passed for c in res.cases}
    record_round(
        loop, n, parent_id=parent["id"], run_dir=trained.run_dir,
        eval_path=evals_dir / "cases.jsonl", data_paths=files,
        pass_rate=res.pass_rate, n_cases=len(res.cases),
        extra={"targeted": [f.id for f in failures], "new_rows": len(new_rows),
               "dropped_contaminated": dropped, "synth": str(out / "synth")})
    result_n = RoundResult(
        loop=loop, round=n, parent_round=parent["round"], groups=groups,
        targeted=[f.id for f in failures], chunks=len(picked), synth=stats,
        new_rows=len(new_rows), dropped_contaminated=dropped, data=data_path,
        run_dir=Path(trained.run_dir), evals=evals_dir, pass_rate_before=parent["pass_rate"],
        pass_rate_after=res.pass_rate,
        flipped_to_pass=[k for k, v in after.items() if v and not before.get(k, False)],
        flipped_to_fail=[k for k, v in after.items() if not v and before.get(k, False)],
        suite_result=res)
    result_n.report = write_loop_report(loop)
    (out / "round.json").write_text(json.dumps(result_n.to_json(), indent=2, ensure_ascii=False)
                                    + "\n", encoding="utf-8")
    return result_n


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
    "clean_new_rows",
    "group_failures",
    "read_results",
    "run_round",
    "seed_chunks",
    "show_groups",
    "target_chunks",
    "write_loop_report",
]
