"""Per-row checks on parsed Records: roles, turn order, empty content. Never mutates a record."""

from __future__ import annotations

from tuneloop.data.records import ROLES, Issue, Record

# Stable issue kinds (reports group by these; `--json` consumers may rely on them).
UNKNOWN_ROLE = "unknown_role"
EMPTY_CONTENT = "empty_content"
NO_TURNS = "no_turns"
NOT_ALTERNATING = "turns_not_alternating"
LAST_NOT_ASSISTANT = "last_turn_not_assistant"
MISPLACED_SYSTEM = "misplaced_system"
EMPTY_TEXT = "empty_text"
CHOSEN_EQUALS_REJECTED = "chosen_equals_rejected"


def validate_record(record: Record) -> list[Issue]:
    """Every problem that makes this record unusable for training (empty list = fine)."""
    if record.messages is None:
        if record.text is None or not record.text.strip():
            return [Issue(EMPTY_TEXT, "text", "field 'text' is empty")]
        return []
    if record.rejected is not None:
        return _validate_pair(record)
    return _validate_messages(record.messages, record.meta.get("format"))


def _validate_pair(record: Record) -> list[Issue]:
    """A preference pair: prompt + chosen as a chat, plus a non-empty rejected != chosen."""
    messages = record.messages or []
    last = len(messages) - 1
    issues = _validate_messages(messages, "chat")
    for issue in issues:  # name the fields as the pair file spells them
        if issue.field and issue.field.startswith("messages["):
            index = int(issue.field[len("messages["):].split("]")[0])
            issue.field = "chosen" if index == last else issue.field.replace("messages", "prompt")
    rejected = record.rejected or ""
    if not rejected.strip():
        issues.append(Issue(EMPTY_CONTENT, "rejected", "the rejected answer is empty"))
    elif messages and messages[-1]["content"].strip() == rejected.strip():
        issues.append(Issue(CHOSEN_EQUALS_REJECTED, "rejected",
                            "chosen and rejected are the same answer: the pair teaches nothing"))
    return issues


def _field(fmt: str | None, index: int, part: str) -> str:
    # Name fields the way the user's file spells them, so they can find them.
    if fmt == "alpaca":
        return {"user": "instruction", "assistant": "output", "system": "system"}.get(part, part)
    if fmt == "prompt_completion":
        return {"user": "prompt", "assistant": "completion"}.get(part, part)
    key, attr = ("conversations", "value") if fmt == "sharegpt" else ("messages", "content")
    if part == "role":
        attr = "from" if fmt == "sharegpt" else "role"
    return f"{key}[{index}].{attr}"


def content_field(record: Record, index: int) -> str:
    """The user's name for the content of turn `index` (e.g. 'output' for Alpaca rows)."""
    fmt = record.meta.get("format")
    if record.rejected is not None and record.messages:
        return "chosen" if index == len(record.messages) - 1 else f"prompt[{index}].content"
    if fmt == "alpaca":
        return {"user": "instruction/input", "assistant": "output", "system": "system"}.get(
            record.messages[index]["role"], "instruction") if record.messages else "instruction"
    if fmt == "prompt_completion":
        return "prompt" if index == 0 else "completion"
    return _field(fmt, index, "content")


def _validate_messages(messages: list[dict[str, str]], fmt: str | None) -> list[Issue]:
    issues: list[Issue] = []
    if not messages:
        return [Issue(NO_TURNS, _field(fmt, 0, "role").split("[")[0], "conversation has no turns")]
    for i, msg in enumerate(messages):
        role, content = msg["role"], msg["content"]
        if role not in ROLES:
            issues.append(Issue(UNKNOWN_ROLE, _field(fmt, i, "role"),
                                f"unknown role {role!r} in turn {i + 1}; expected one of "
                                f"{', '.join(ROLES)} (sharegpt: human/gpt/system)"))
        elif not content.strip():
            part = role if fmt in ("alpaca", "prompt_completion") else "content"
            issues.append(Issue(EMPTY_CONTENT, _field(fmt, i, part),
                                f"{role} turn {i + 1} is empty"))
        if role == "system" and i > 0:
            issues.append(Issue(MISPLACED_SYSTEM, _field(fmt, i, "role"),
                                f"system turn at position {i + 1}; only the first turn may be "
                                "system"))
    if any(i.kind == UNKNOWN_ROLE for i in issues):
        return issues  # turn-order checks would only repeat the same problem
    turns = [(i, m["role"]) for i, m in enumerate(messages) if m["role"] != "system"]
    for n, (i, role) in enumerate(turns):
        expected = "user" if n % 2 == 0 else "assistant"
        if role != expected:
            issues.append(Issue(NOT_ALTERNATING, _field(fmt, i, "role"),
                                f"turns must alternate user/assistant starting with user; "
                                f"turn {i + 1} is {role}, expected {expected}"))
            break
    if not turns or turns[-1][1] != "assistant":
        last = messages[-1]["role"]
        issues.append(Issue(LAST_NOT_ASSISTANT, _field(fmt, len(messages) - 1, "role"),
                            f"last turn is {last}, not assistant: there is no answer to train on"))
    return issues
