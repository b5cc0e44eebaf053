"""The `data check` pipeline: load → validate → exact/near dedup → PII → length, and its report.

Every input row ends in exactly one place: `CheckReport.kept` (clean) or `CheckReport.rejected`
(with its original text, file:line and every reason). `load_clean_records` is the same pipeline
with validation only: what training and evaluation read their data through.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.data import curate, pii
from tuneloop.data.contamination import ContaminationReport, EvalItem, contamination_report
from tuneloop.data.load import FileInfo, LoadResult, load_records
from tuneloop.data.records import Issue, Record, Rejected
from tuneloop.data.render import ANSWER_CUT, Renderer
from tuneloop.data.validate import validate_record
from tuneloop.errors import DataError
from tuneloop.progress import eta_progress

EXACT_DUP = "exact_duplicate"
NEAR_DUP = "near_duplicate"
PII = "pii"
TOO_LONG = "too_long"
RENDER_FAILED = "cannot_render"
EXAMPLES_PER_KIND = 3
# Below this many rows a progress bar would only flicker.
_PROGRESS_MIN_ROWS = 5000
_log = logging.getLogger("tuneloop.data")


@dataclass
class CheckOptions:
    """What `data check` looks for; every field has the CLI's default."""

    near_dup: bool = True
    near_dup_threshold: float = curate.DEFAULT_THRESHOLD
    num_perm: int = curate.NUM_PERM
    exact_dup: bool = True
    pii: bool = True
    redact_pii: bool = False
    tokenizer: Any = None  # with it: token-length stats (and the max_length check)
    template: str = "auto"  # the model's template (models.model_template), as training uses it
    max_length: int | None = None
    # Eval items to scan for contamination (plain texts, Records or {"where", "text"} dicts;
    # the eval side extracts them from suites: tuneloop.eval.contamination.load_eval_items).
    against: Sequence[EvalItem] | None = None
    ngram: int = 13
    progress: bool = False


@dataclass
class CheckReport:
    """Outcome of a check: kept records, rejected rows and the summary numbers."""

    files: list[FileInfo]
    rows_read: int
    kept: list[Record]
    rejected: list[Rejected]
    reasons: Counter = field(default_factory=Counter)  # rows per issue kind
    exact_dup_clusters: int = 0
    near_dup_clusters: int = 0
    largest_cluster: int = 0
    pii_found: Counter = field(default_factory=Counter)
    pii_redacted: bool = False
    token_lengths: dict[str, int] | None = None
    prompt_truncated: int = 0
    stats: curate.Stats | None = None
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    contamination: ContaminationReport | None = None
    near_dup_threshold: float = curate.DEFAULT_THRESHOLD

    @property
    def skipped_blank(self) -> int:
        """Blank lines that were not rows (counted, so none vanish unexplained)."""
        return sum(f.skipped_blank for f in self.files)

    @property
    def issue_count(self) -> int:
        """Rows rejected for any reason (what --strict fails on)."""
        return len(self.rejected)

    def nothing_usable_message(self) -> str:
        """One line saying that no row survived and the top reasons why."""
        if self.rows_read == 0:
            return (f"no rows found ({self.skipped_blank} blank lines); the input is empty")
        top = ", ".join(f"{k} ×{n}" for k, n in self.reasons.most_common(3))
        return (f"no usable rows remain: all {self.rows_read} rows were rejected"
                + (f" ({top})" if top else ""))

    def to_json(self) -> dict[str, Any]:
        """Machine-readable report (what `--json` prints)."""
        stats = self.stats
        return {
            "rows_read": self.rows_read,
            "kept": len(self.kept),
            "rejected": len(self.rejected),
            "skipped_blank_lines": self.skipped_blank,
            "files": [vars(f) for f in self.files],
            "rejected_by_reason": dict(self.reasons.most_common()),
            "duplicates": {"exact_clusters": self.exact_dup_clusters,
                           "near_clusters": self.near_dup_clusters,
                           "largest_cluster": self.largest_cluster,
                           "near_dup_threshold": self.near_dup_threshold},
            "pii": {"found": dict(self.pii_found), "redacted": self.pii_redacted},
            "token_lengths": self.token_lengths,
            "prompt_truncated": self.prompt_truncated,
            "share_with_input": stats.share_with_input if stats else None,
            "first_words": stats.first_words if stats else [],
            "examples": self.examples,
            "contamination": self.contamination.to_json() if self.contamination else None,
        }

    def write_clean(self, path: str | Path) -> int:
        """Write kept rows as canonical JSONL; returns rows written."""
        return _write_jsonl(path, (r.to_json() for r in self.kept))

    def write_rejects(self, path: str | Path) -> int:
        """Write rejected rows (original text, source, line, reasons) as JSONL."""
        return _write_jsonl(path, (r.to_json() for r in self.rejected))


def _write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)  # never leave a half-written file under the real name
    return n


def _tracker(enabled: bool) -> Callable[[Iterable, str, int], Iterable]:
    def track(items: Iterable, description: str, total: int) -> Iterable:
        if not enabled or total < _PROGRESS_MIN_ROWS:
            return items
        return _tracked(items, description, total)
    return track


def _tracked(items: Iterable, description: str, total: int) -> Iterator:
    with eta_progress(transient=True) as progress:
        yield from progress.track(items, total=total, description=description)


def check_files(paths: str | Path | Sequence[str | Path], *, format: str | None = None,
                field_map: str | Mapping[str, str] | None = None,
                options: CheckOptions | None = None) -> CheckReport:
    """Load the files and run every check on them."""
    loaded = load_records(paths, format=format, field_map=field_map)
    return check_loaded(loaded, options or CheckOptions())


def load_clean_records(paths: str | Path | Sequence[str | Path], *, format: str | None = None,
                       field_map: str | Mapping[str, str] | None = None,
                       **check_opts: Any) -> list[Record]:
    """Load + validate; return usable records, raise DataError if none remain.

    Validation only by default (parse errors, roles, turn order, empty answers): dedup and PII
    are curation choices made with `tuneloop data check --out`, so training and eval sets are
    not silently changed here. Pass CheckOptions fields (exact_dup=True, near_dup=True,
    pii=True, ...) to run those checks too. Rejected rows are counted in a logged warning.
    """
    opts: dict[str, Any] = {"exact_dup": False, "near_dup": False, "pii": False}
    opts.update(check_opts)
    report = check_files(paths, format=format, field_map=field_map, options=CheckOptions(**opts))
    where = ", ".join(map(str, [paths] if isinstance(paths, (str, Path)) else paths))
    if not report.kept:
        raise DataError(report.nothing_usable_message(), where=where,
                        fix="run `tuneloop data check` on the files to see every rejected row")
    if report.rejected:
        reasons = ", ".join(f"{k} ×{n}" for k, n in report.reasons.most_common())
        _log.warning("%s: %d of %d rows rejected (%s); `tuneloop data check` lists them",
                     where, len(report.rejected), report.rows_read, reasons)
    return report.kept


def check_loaded(loaded: LoadResult, options: CheckOptions) -> CheckReport:
    """Run every check on already-loaded rows."""
    track = _tracker(options.progress)
    records = loaded.records
    issues: dict[int, list[Issue]] = {}
    for i, rec in enumerate(records):
        found = validate_record(rec)
        if found:
            issues[i] = found
    valid = [i for i in range(len(records)) if i not in issues]
    report = CheckReport(files=loaded.files, rows_read=loaded.rows_read, kept=[], rejected=[],
                         near_dup_threshold=options.near_dup_threshold)

    if options.exact_dup:
        cand = [records[i] for i in valid]
        dups = curate.exact_duplicates(cand)
        report.exact_dup_clusters = len({first for first in dups.values()})
        for d, first in dups.items():
            issues[valid[d]] = [Issue(EXACT_DUP, None, "exact duplicate (after whitespace/case "
                                      f"normalisation) of {cand[first].where}")]
        valid = [i for i in valid if i not in issues]
    if options.near_dup and len(valid) > 1:
        cand = [records[i] for i in valid]
        near = curate.near_duplicates(
            cand, threshold=options.near_dup_threshold, num_perm=options.num_perm,
            progress=lambda it: track(it, "near-duplicates (MinHash)", len(cand)))
        sizes = Counter(first for first, _ in near.values())
        report.near_dup_clusters = len(sizes)
        report.largest_cluster = max(sizes.values(), default=0) + (1 if sizes else 0)
        for d, (first, sim) in near.items():
            issues[valid[d]] = [Issue(NEAR_DUP, None, f"near-duplicate of {cand[first].where} "
                                      f"(word 3-gram Jaccard {sim:.2f} ≥ "
                                      f"{options.near_dup_threshold})")]
        valid = [i for i in valid if i not in issues]

    final: dict[int, Record] = {}
    for i in valid:
        rec = records[i]
        if options.pii:
            rec = _pii_step(rec, options, report, issues.setdefault(i, []))
        final[i] = rec
    _length_step(final, options, report, issues, track)

    for i, rec in enumerate(records):
        if issues.get(i):
            report.rejected.append(Rejected(rec.source, rec.line, rec.raw, issues[i]))
        else:
            report.kept.append(final[i])
    report.rejected.extend(loaded.rejects)
    order = {f.path: n for n, f in enumerate(loaded.files)}
    report.rejected.sort(key=lambda r: (order.get(r.source, 0), r.line))
    _summarise(report)
    if options.against is not None:
        report.contamination = contamination_report(report.kept, options.against,
                                                    n=options.ngram)
    return report


def _pii_step(rec: Record, options: CheckOptions, report: CheckReport,
              issues: list[Issue]) -> Record:
    found = pii.record_pii(rec)
    if not found:
        return rec
    report.pii_found.update(m.kind for _, m in found)
    if options.redact_pii:
        report.pii_redacted = True
        return pii.redact_record(rec)[0]
    for fld, m in found:
        label = {"email": "an email address", "phone": "a phone number",
                 "credit_card": "a credit card number", "ssn": "a US SSN"}[m.kind]
        issues.append(Issue(PII, fld, f"contains {label} at character {m.start}; pass "
                            f"--redact-pii to replace it with {pii.PLACEHOLDERS[m.kind]}"))
    return rec


def _length_step(final: dict[int, Record], options: CheckOptions, report: CheckReport,
                 issues: dict[int, list[Issue]], track: Callable) -> None:
    if options.tokenizer is None:
        return
    full = Renderer(options.tokenizer, template=options.template)
    limited = Renderer(options.tokenizer, template=options.template,
                       max_length=options.max_length) if options.max_length else None
    lengths: list[int] = []
    todo = [i for i in final if not issues.get(i)]
    for i in track(todo, "token lengths", len(todo)):
        rec = final[i]
        res = full.render(rec)
        if res.example is None:
            issues[i].append(Issue(RENDER_FAILED, None,
                                   f"cannot be rendered with the model's template: {res.reason}"))
            continue
        n = len(res.example.input_ids)
        lengths.append(n)
        if limited is None or n <= limited.max_length or rec.messages is None:
            continue  # long raw text is chunked at training time, never cut
        cut = limited.render(rec)
        if cut.example is None:
            why = ("the answer would be cut (the prompt cannot be shortened enough)"
                   if cut.reason == ANSWER_CUT else cut.reason)
            issues[i].append(Issue(TOO_LONG, None,
                                   f"{n} tokens under the model's template > --max-length "
                                   f"{options.max_length}: {why}; raise --max-length or "
                                   "shorten the row"))
        else:
            report.prompt_truncated += 1
    if lengths:
        report.token_lengths = {"p50": curate.percentile(lengths, 50),
                                "p95": curate.percentile(lengths, 95), "max": max(lengths)}


def _summarise(report: CheckReport) -> None:
    for rej in report.rejected:
        for kind in dict.fromkeys(i.kind for i in rej.issues):
            report.reasons[kind] += 1
            shown = report.examples.setdefault(kind, [])
            if len(shown) < EXAMPLES_PER_KIND:
                issue = next(i for i in rej.issues if i.kind == kind)
                raw = rej.raw or ""
                shown.append({"where": rej.where, "field": issue.field, "message": issue.message,
                              "raw": raw if len(raw) <= 160 else raw[:157] + "..."})
    report.stats = curate.dataset_stats(report.kept)
