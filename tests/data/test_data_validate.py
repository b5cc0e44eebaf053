"""Validation of parsed records: roles, turn order, empty answers (R11)."""

from __future__ import annotations

import pytest

from tuneloop.data.records import Record
from tuneloop.data.validate import validate_record


def kinds(record: Record) -> list[tuple[str, str | None]]:
    return [(i.kind, i.field) for i in validate_record(record)]


def test_valid_chat_and_text_have_no_issues():
    assert kinds(Record.chat(("system", "s"), ("user", "u"), ("assistant", "a"),
                             ("user", "u2"), ("assistant", "a2"))) == []
    assert kinds(Record(text="hello")) == []


@pytest.mark.parametrize("turns,expected", [
    ([("user", "u"), ("bot", "a")], [("unknown_role", "messages[1].role")]),
    ([("user", "u"), ("assistant", "  ")], [("empty_content", "messages[1].content")]),
    ([("user", "u"), ("user", "u"), ("assistant", "a")],
     [("turns_not_alternating", "messages[1].role")]),
    ([("assistant", "a")], [("turns_not_alternating", "messages[0].role")]),
    ([("user", "u"), ("assistant", "a"), ("user", "more?")],
     [("last_turn_not_assistant", "messages[2].role")]),
    ([("user", "u"), ("system", "s"), ("assistant", "a")],
     [("misplaced_system", "messages[1].role")]),
])
def test_chat_issues_name_the_field(turns, expected):
    """R11: unknown roles, non-alternating turns, last turn not assistant, empty content."""
    assert kinds(Record.chat(*turns)) == expected


def test_field_names_follow_the_source_format():
    rec = Record.chat(("user", "q"), ("assistant", ""), meta={"format": "alpaca"})
    assert kinds(rec) == [("empty_content", "output")]
    sg = Record.chat(("user", "q"), ("wizard", "a"), meta={"format": "sharegpt"})
    assert kinds(sg) == [("unknown_role", "conversations[1].from")]
    assert kinds(Record(messages=[])) == [("no_turns", "messages")]
    assert kinds(Record(text=" ")) == [("empty_text", "text")]


def test_validation_never_mutates():
    rec = Record.chat(("user", " u "), ("bot", ""))
    before = [dict(m) for m in rec.messages]
    validate_record(rec)
    assert rec.messages == before
