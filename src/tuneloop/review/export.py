"""Saved reviews → training rows (`review export`), and `load_reviewed` for `iterate --reviewed`.

Each row: `messages` (user question, assistant answer; a generated row keeps its other turns) and
`meta` with `source` ("human" for rows a person wrote or edited, "machine" for accepted generated
rows), `reviewed` ("written" | "edited" | "accepted"), `targets` (the case ids the row is for),
`reviewer`, `reviewed_at`, `review_item`; an edited row keeps the machine's answer in
`edited_from`; a generated row keeps its generator's meta. Rejected rows are counted, not written.

A written row is one per case and reviewer (two people writing for one failure give two rows).
A generated row is exported once: when reviewers disagree about it, the latest save decides, and
the summary counts such rows.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.data.jsonl import read_jsonl_objects
from tuneloop.errors import DataError, UsageError
from tuneloop.review.store import Review, ReviewStore, open_existing

REVIEWED = ("written", "edited", "accepted")
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class ExportSummary:
    """What export wrote and what it left out."""

    out: Path | None
    rows: int = 0
    by_kind: Counter = field(default_factory=Counter)  # written / edited / accepted
    by_source: Counter = field(default_factory=Counter)  # human / machine
    rejected: int = 0
    disagreements: int = 0  # generated rows whose reviewers did not agree (latest save used)
    replaced: int = 0  # earlier saves replaced by the same reviewer's later save

    def line(self) -> str:
        """The command's one summary line."""
        where = f" to {self.out}" if self.out is not None else ""
        kinds = ", ".join(f"{self.by_kind[k]} {k}" for k in REVIEWED)
        text = (f"wrote {self.rows} reviewed row(s){where}: {kinds} (human {self.by_source['human']}"
                f", machine {self.by_source['machine']}); left out: {self.rejected} rejected")
        if self.disagreements:
            text += (f"; {self.disagreements} generated row(s) had reviewers who disagreed "
                     "(the latest save was used)")
        if self.replaced:
            text += f"; {self.replaced} earlier save(s) replaced by their reviewer"
        return text


def _replace_answer(messages: list[dict[str, str]], answer: str) -> list[dict[str, str]]:
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return [dict(m, content=answer) if i == last else dict(m) for i, m in enumerate(messages)]


def _row_meta(review: Review, item_id: str, **extra: Any) -> dict[str, Any]:
    return {**extra, "reviewer": review.reviewer, "reviewed_at": review.updated_at,
            "review_item": item_id}


def _written_row(review: Review, data: dict[str, Any]) -> dict[str, Any]:
    chunk = data.get("chunk") or {}
    meta = _row_meta(review, review.item_id, source="human", reviewed="written",
                     targets=[data["case_id"]], chunk=chunk.get("key"))
    if data.get("round") is not None:
        meta["round"] = data["round"]  # the round whose failures it was written for
    return {"messages": [{"role": "user", "content": review.question or ""},
                         {"role": "assistant", "content": review.answer or ""}], "meta": meta}


def _generated_row(review: Review, data: dict[str, Any]) -> dict[str, Any]:
    meta = dict(data.get("meta") or {})
    targets = meta.get("targets") if isinstance(meta.get("targets"), list) else []
    if review.action == "edited":
        meta.update(source="human", reviewed="edited", edited_from=data["answer"])
        messages = _replace_answer(data["messages"], review.answer or "")
    else:
        meta.update(source=meta.get("source") or "machine", reviewed="accepted")
        messages = [dict(m) for m in data["messages"]]
    meta.update(targets=targets, **_row_meta(review, review.item_id))
    return {"messages": messages, "meta": meta}


def store_rows(store: ReviewStore) -> tuple[list[dict[str, Any]], ExportSummary]:
    """The training rows of every saved review in `store` and the counts (see module doc)."""
    summary = ExportSummary(out=None, replaced=store.replaced_count())
    rows: list[dict[str, Any]] = []
    latest: dict[str, Review] = {}  # generated row → its latest review
    actions: dict[str, set[tuple[str, str | None]]] = {}
    items: dict[str, Any] = {}
    for review in store.reviews():  # in save order: the last one per row wins below
        item = items.setdefault(review.item_id, store.item(review.item_id))
        if item.kind == "case":
            rows.append(_written_row(review, item.data))
        else:
            latest[review.item_id] = review
            actions.setdefault(review.item_id, set()).add((review.action, review.answer))
    for item_id, review in sorted(latest.items(), key=lambda kv: (kv[1].updated_at, kv[1].id)):
        summary.disagreements += len(actions[item_id]) > 1
        if review.action == "rejected":
            summary.rejected += 1
            continue
        rows.append(_generated_row(review, items[item_id].data))
    for row in rows:
        summary.by_kind[row["meta"]["reviewed"]] += 1
        summary.by_source[row["meta"]["source"]] += 1
    summary.rows = len(rows)
    return rows, summary


def export_reviewed(db: str | Path, out: str | Path) -> ExportSummary:
    """Write the reviewed rows of `db` to `out` (JSONL, written whole then renamed into place)."""
    out = Path(out)
    if out.resolve() == Path(db).resolve():
        raise UsageError("--out is the review database itself", where=str(out),
                         fix="pass another file name, e.g. --out reviewed.jsonl")
    store = open_existing(db)
    try:
        rows, summary = store_rows(store)
    finally:
        store.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    summary.out = out
    return summary


def load_reviewed(path: str | Path) -> list[dict[str, Any]]:
    """Reviewed training rows from a reviewed.jsonl (`review export`) or a review.sqlite."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror}", where=str(p),
                        fix="pass the reviewed.jsonl `tuneloop review export` wrote, or the "
                        "review.sqlite `tuneloop review serve` kept") from None
    if head == _SQLITE_MAGIC:
        store = open_existing(p)
        try:
            return store_rows(store)[0]
        finally:
            store.close()
    rows = []
    for where, row in read_jsonl_objects(p, example='{"messages": [...], "meta": {"source": '
                                         '"human", "reviewed": "written", ...}}'):
        meta = row.get("meta")
        if (not isinstance(row.get("messages"), list) or not isinstance(meta, dict)
                or meta.get("reviewed") not in REVIEWED or meta.get("source") not in
                ("human", "machine")):
            raise DataError("not a reviewed row: it needs 'messages' and 'meta' with 'source' "
                            f"(human/machine) and 'reviewed' ({'/'.join(REVIEWED)})", where=where,
                            fix="pass the file `tuneloop review export` wrote")
        rows.append(row)
    return rows
