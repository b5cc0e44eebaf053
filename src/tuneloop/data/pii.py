"""Find and redact personal data: emails, phone numbers, credit cards (Luhn-checked), US SSNs."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace

from tuneloop.data.records import Record
from tuneloop.data.validate import content_field

PLACEHOLDERS = {"email": "[EMAIL]", "phone": "[PHONE]", "credit_card": "[CREDIT_CARD]",
                "ssn": "[SSN]"}

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# 13–19 digits, optionally grouped by single spaces or dashes; Luhn decides.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# SSA never issues area 000, 666 or 9xx, group 00 or serial 0000.
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
# North American numbers with separators or parentheses, or international numbers with '+'.
# A bare run of digits is not taken as a phone number: too many ids and amounts look like one.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+?1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\d)"
    r"|(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\d)"
)


# Every pattern needs a digit or an '@'; one C-level scan rules most rows out.
_TRIGGER = re.compile(r"[0-9@]")


@dataclass(frozen=True)
class PiiMatch:
    """One finding: its kind ("email", "phone", "credit_card", "ssn") and span in the text."""

    kind: str
    start: int
    end: int
    value: str


def luhn_ok(digits: str) -> bool:
    """True if the digit string passes the Luhn checksum used by payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


def find_pii(text: str) -> list[PiiMatch]:
    """Every PII finding in `text`, non-overlapping, in text order."""
    if not _TRIGGER.search(text):
        return []  # fast path: most rows have neither digits nor '@'
    found: list[PiiMatch] = []
    # Order is priority: a Luhn-valid card is not also reported as a phone number.
    for kind, pattern in (("email", _EMAIL), ("credit_card", _CARD), ("ssn", _SSN),
                          ("phone", _PHONE)):
        for m in pattern.finditer(text):
            if kind == "credit_card" and not luhn_ok(_digits(m.group())):
                continue
            if kind == "phone" and not 10 <= len(_digits(m.group())) <= 15:
                continue
            if any(m.start() < f.end and f.start < m.end() for f in found):
                continue
            found.append(PiiMatch(kind, m.start(), m.end(), m.group()))
    return sorted(found, key=lambda f: f.start)


def redact_text(text: str) -> tuple[str, Counter[str]]:
    """Text with each finding replaced by its placeholder, and counts per kind."""
    matches = find_pii(text)
    counts: Counter[str] = Counter(m.kind for m in matches)
    for m in reversed(matches):
        text = text[:m.start] + PLACEHOLDERS[m.kind] + text[m.end:]
    return text, counts


def record_pii(record: Record) -> list[tuple[str, PiiMatch]]:
    """(field, match) for every finding in a record's text or turn contents."""
    if record.messages is None:
        return [("text", m) for m in find_pii(record.text or "")]
    found = [(content_field(record, i), m) for i, msg in enumerate(record.messages)
             for m in find_pii(msg["content"])]
    if record.rejected is not None:  # a preference pair's other answer
        found += [("rejected", m) for m in find_pii(record.rejected)]
    return found


def redact_record(record: Record) -> tuple[Record, Counter[str]]:
    """A new record with PII replaced by typed placeholders ([EMAIL], ...) and counts per kind."""
    counts: Counter[str] = Counter()
    if record.messages is None:
        text, counts = redact_text(record.text or "")
        return replace(record, text=text, meta=dict(record.meta)), counts
    messages = []
    for msg in record.messages:
        content, c = redact_text(msg["content"])
        counts += c
        messages.append({**msg, "content": content})
    rejected = record.rejected
    if rejected is not None:
        rejected, c = redact_text(rejected)
        counts += c
    return replace(record, messages=messages, rejected=rejected, meta=dict(record.meta)), counts
