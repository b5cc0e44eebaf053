"""PII detection and redaction: emails, phones, Luhn-checked cards, SSNs."""

from __future__ import annotations

import pytest

from tuneloop.data.pii import find_pii, luhn_ok, redact_record, redact_text
from tuneloop.data.records import Record


@pytest.mark.parametrize("text,kinds", [
    ("mail bob.smith+x@mail.example.co.uk now", ["email"]),
    ("call (555) 123-4567 or +1 555.123.4567", ["phone", "phone"]),
    ("London office: +44 20 7946 0958", ["phone"]),
    ("card 4111 1111 1111 1111, amex 3782-822463-10005", ["credit_card", "credit_card"]),
    ("ssn 123-45-6789", ["ssn"]),
])
def test_finds_each_kind(text, kinds):
    assert [m.kind for m in find_pii(text)] == kinds


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112",  # fails Luhn
    "not an ssn 000-12-3456 or 666-12-3456",
    "version 1.2.3 in 2024, order 12345678, total 1,234,567.89",
    "call 555-0100",  # 7 digits: too short to be sure
    "ISBN 978-3-16-148410-0",
])
def test_no_false_positives(text):
    assert find_pii(text) == []


def test_luhn():
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")


def test_redaction_uses_typed_placeholders_and_returns_a_new_record():
    text, counts = redact_text("Write to a@b.io or 555-123-4567; ssn 123-45-6789")
    assert text == "Write to [EMAIL] or [PHONE]; ssn [SSN]"
    assert counts == {"email": 1, "phone": 1, "ssn": 1}
    rec = Record.chat(("user", "card 4111111111111111"), ("assistant", "ok"))
    new, c = redact_record(rec)
    assert new.messages[0]["content"] == "card [CREDIT_CARD]" and c == {"credit_card": 1}
    assert rec.messages[0]["content"] == "card 4111111111111111"
