"""The one internal record every data path produces (chat messages or raw text, with its source),
and the rejected-row types every check reports with (an Issue per reason, the Rejected row)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant")


@dataclass
class Record:
    """One training/eval example.

    Exactly one of `messages` (chat: [{"role", "content"}]) or `text` (continued pretraining)
    is set. A preference pair (DPO) is a chat record whose last turn is the chosen answer, with
    the rejected answer in `rejected`: every chat check (roles, order, PII, length) applies to
    prompt + chosen unchanged. `source` and `line` point at where the row came from (1-based line for text files,
    1-based row index for tabular ones) so every message can say file:line. `raw` keeps the row's
    original text so a rejected row is written back exactly as the user gave it.
    """

    messages: list[dict[str, str]] | None = None
    text: str | None = None
    source: str = "<memory>"
    line: int = 0
    raw: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    rejected: str | None = None  # preference pairs only: the rejected answer

    @property
    def where(self) -> str:
        """`file:line` for messages."""
        return f"{self.source}:{self.line}"

    @property
    def is_preference(self) -> bool:
        """True for preference pairs (prompt + chosen in `messages`, and `rejected`)."""
        return self.rejected is not None

    @property
    def is_chat(self) -> bool:
        """True for chat records, False for raw-text (pretraining) records."""
        return self.messages is not None

    def to_json(self) -> dict[str, Any]:
        """The canonical on-disk form (what `data check --out` and `data split` write)."""
        if self.rejected is not None and self.messages:
            return {"prompt": [dict(m) for m in self.messages[:-1]],
                    "chosen": self.messages[-1]["content"], "rejected": self.rejected}
        if self.messages is not None:
            return {"messages": [dict(m) for m in self.messages]}
        return {"text": self.text}

    @classmethod
    def chat(cls, *turns: tuple[str, str], **kw: Any) -> Record:
        """Shorthand for tests and code: Record.chat(("user", "hi"), ("assistant", "hello"))."""
        return cls(messages=[{"role": r, "content": c} for r, c in turns], **kw)


@dataclass
class Issue:
    """One problem with one row: a kind (stable id), the field it concerns and a readable message."""

    kind: str
    field: str | None
    message: str

    def to_json(self) -> dict[str, Any]:
        """Plain dict for reports and rejects files."""
        return {"kind": self.kind, "field": self.field, "message": self.message}


@dataclass
class Rejected:
    """A row that will not be used, with its original text and every reason."""

    source: str
    line: int
    raw: str | None
    issues: list[Issue]

    @property
    def where(self) -> str:
        """`file:line`."""
        return f"{self.source}:{self.line}"

    def to_json(self) -> dict[str, Any]:
        """The rejects-file form: original text, source, line and reasons."""
        return {"source": self.source, "line": self.line, "raw": self.raw,
                "reasons": [i.to_json() for i in self.issues]}
