"""What a review shows: a round's failed cases and its generated rows, read from the loop's files.

- `--result`: a suite result (cases.jsonl, or the directory holding it); its failed cases become
  items a reviewer writes a training row for. Every case (passed or not) is also kept as text to
  scan written rows against: iterate drops rows sharing a 13-gram with the suite.
- `--rows`: generated rows (`round-NNN/synth/train.jsonl`); each one a reviewer accepts, rejects
  or edits.
- `--targets`: `round-NNN/targets.json`; its optional `case_chunks` names the chunk targeted for
  each failed case (`{case id: {"key": "doc#idx", "text": ...}}`), and chunk texts for rows.

Item ids come from the content (sha256), so restarting with the same files finds the same items
and their saved reviews. Bad input stops at the first bad line with its file:line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.data.jsonl import read_jsonl_objects
from tuneloop.errors import DataError

_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Item:
    """One thing to review: a failed case ("case") or a generated row ("row")."""

    id: str
    kind: str
    data: dict[str, Any]


@dataclass
class ReviewInputs:
    """The items of one review and the suite texts written rows are scanned against."""

    cases: list[Item]
    rows: list[Item]
    suite_texts: list[dict[str, str]]  # {"where": "case id", "text": its non-system turns}
    round: int | None = None
    duplicate_rows: int = 0  # identical generated rows, shown (and exported) once
    passed_cases: int = 0
    notes: list[str] = field(default_factory=list)


def _item_id(prefix: str, value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return prefix + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _messages(value: Any, where: str, what: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise DataError(f"'{what}' must be a non-empty list of messages", where=where,
                        fix='write [{"role": "user", "content": "..."}, ...]')
    out = []
    for k, m in enumerate(value):
        if (not isinstance(m, dict) or m.get("role") not in _ROLES
                or not isinstance(m.get("content"), str)):
            raise DataError(f"{what}[{k}] needs a role ({', '.join(_ROLES)}) and string content",
                            where=where, fix='use {"role": "user", "content": "..."}')
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _last(messages: list[dict[str, str]], role: str) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == role), "")


def cases_file(path: str | Path) -> Path:
    """The cases.jsonl of `path` (itself, or the one inside an eval directory)."""
    p = Path(path)
    return p / "cases.jsonl" if p.is_dir() else p


def read_targets(path: str | Path) -> dict[str, Any]:
    """targets.json as a dict (`case_chunks` may be absent: older rounds did not write it)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror}", where=str(p),
                        fix="pass the round's targets.json (LOOP/round-NNN/targets.json)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise DataError(f"not a JSON file ({exc})", where=f"{p}{line}",
                        fix="pass the targets.json `tuneloop iterate` wrote") from None
    if not isinstance(data, dict):
        raise DataError("targets.json must hold a JSON object", where=str(p),
                        fix="pass the targets.json `tuneloop iterate` wrote")
    chunks = data.get("case_chunks", {})
    if not isinstance(chunks, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("key", ""), str)
            and isinstance(v.get("text", ""), str) for v in chunks.values()):
        raise DataError("'case_chunks' must map case ids to {\"key\": ..., \"text\": ...}",
                        where=str(p), fix="pass the targets.json `tuneloop iterate` wrote")
    return data


def read_cases(path: str | Path, case_chunks: dict[str, dict[str, str]] | None = None
               ) -> tuple[list[Item], list[dict[str, str]], int]:
    """(failed-case items, every case's text for the 13-gram scan, passed count) of a result."""
    p = cases_file(path)
    if p.suffix == ".json":  # a compare.json holds several variants: pick one's cases
        raise DataError("a comparison, not one suite result", where=str(p),
                        fix="pass the cases.jsonl of the variant to review (beside compare.json, "
                        "in the variant's directory)")
    if Path(path).is_dir() and not p.is_file():
        raise DataError("no cases.jsonl in this directory", where=str(path),
                        fix="pass a suite result: cases.jsonl or the directory `eval suite` wrote")
    case_chunks = case_chunks or {}
    items: list[Item] = []
    texts: list[dict[str, str]] = []
    passed = 0
    seen: dict[str, str] = {}
    rows = read_jsonl_objects(p, example='{"id": "q1", "prompt": [...], "output": "...", '
                              '"passed": false, "checks": [...]}')
    for where, row in rows:
        case_id = row.get("id")
        if not isinstance(case_id, str) or not case_id:
            raise DataError("a case needs a string 'id'", where=where,
                            fix="pass a suite result (cases.jsonl from `tuneloop eval suite`)")
        if case_id in seen:
            raise DataError(f"case id {case_id!r} repeats (first at {seen[case_id]})", where=where,
                            fix="pass one suite result; each case appears once")
        seen[case_id] = where
        if not isinstance(row.get("passed"), bool):
            raise DataError("a case needs 'passed': true or false", where=where,
                            fix="pass a suite result (cases.jsonl from `tuneloop eval suite`)")
        prompt = _messages(row.get("prompt"), where, "prompt")
        output = row.get("output", "")
        checks = row.get("checks", [])
        if not isinstance(output, str) or not isinstance(checks, list) or not all(
                isinstance(c, dict) and isinstance(c.get("name"), str) for c in checks):
            raise DataError("'output' must be a string and 'checks' a list of {\"name\": ...}",
                            where=where, fix="pass a suite result from `tuneloop eval suite`")
        texts.append({"where": case_id, "text": "\n".join(
            m["content"] for m in prompt if m["role"] != "system")})
        if row["passed"]:
            passed += 1
            continue
        failed = [{"name": c["name"], "detail": str(c.get("detail", ""))}
                  for c in checks if not c.get("passed")]
        chunk = case_chunks.get(case_id)
        data = {"case_id": case_id, "question": _last(prompt, "user"), "prompt": prompt,
                "output": output, "failed_checks": failed,
                "tags": [str(t) for t in row.get("tags", []) if isinstance(t, (str, int))],
                "chunk": ({"key": chunk.get("key", ""), "text": chunk.get("text", "")}
                          if chunk else None),
                "where": where}
        items.append(Item(_item_id("c-", {"case": case_id, "prompt": prompt, "output": output}),
                          "case", data))
    return items, texts, passed


def read_rows(path: str | Path, chunk_texts: dict[str, str] | None = None
              ) -> tuple[list[Item], int]:
    """(generated-row items, identical rows folded into one) of a synth train.jsonl."""
    chunk_texts = chunk_texts or {}
    items: dict[str, Item] = {}
    duplicates = 0
    for where, row in read_jsonl_objects(path, example='{"messages": [...], "meta": {...}}'):
        messages = _messages(row.get("messages"), where, "messages")
        question, answer = _last(messages, "user"), _last(messages, "assistant")
        if messages[-1]["role"] != "assistant" or not question:
            raise DataError("a generated row needs a user turn and ends with the assistant's "
                            "answer", where=where, fix="pass the synth train.jsonl of the round")
        meta = row.get("meta", {})
        if not isinstance(meta, dict):
            raise DataError("'meta' must be a JSON object", where=where,
                            fix="pass the synth train.jsonl of the round")
        key = chunk_key(meta)
        item_id = _item_id("r-", {"messages": messages, "meta": meta})
        if item_id in items:
            duplicates += 1  # counted and said at start; one review covers both
            continue
        items[item_id] = Item(item_id, "row", {
            "messages": messages, "meta": meta, "question": question, "answer": answer,
            "chunk": {"key": key, "text": chunk_texts.get(key, "")} if key else None,
            "where": where})
    return list(items.values()), duplicates


def chunk_key(meta: dict[str, Any]) -> str | None:
    """"doc#idx" for a row's source chunk (synth docs writes document + chunk index)."""
    chunk = meta.get("chunk")
    if isinstance(chunk, str) and chunk:
        return chunk
    if isinstance(chunk, int) and isinstance(meta.get("document"), str):
        return f"{meta['document']}#{chunk}"
    return None


def read_inputs(result: str | Path, rows: str | Path | None = None,
                targets: str | Path | None = None) -> ReviewInputs:
    """Everything one review shows, read and checked up front (bad input stops with file:line)."""
    target_doc = read_targets(targets) if targets is not None else {}
    case_chunks = target_doc.get("case_chunks", {})
    cases, texts, passed = read_cases(result, case_chunks)
    chunk_texts = {c["key"]: c["text"] for c in case_chunks.values() if c.get("key")}
    row_items, duplicates = read_rows(rows, chunk_texts) if rows is not None else ([], 0)
    notes = []
    named = target_doc.get("result")
    if isinstance(named, str) and Path(named).resolve() != cases_file(result).resolve():
        notes.append(f"note: {targets} was written for {named}, not {cases_file(result)}; "
                     "the chunks shown may belong to another round")
    round_no = target_doc.get("round")
    round_no = round_no if isinstance(round_no, int) else None
    for case in cases:
        case.data["round"] = round_no
    return ReviewInputs(cases, row_items, texts, round=round_no,
                        duplicate_rows=duplicates, passed_cases=passed, notes=notes)
