"""What every generator backend is: chat prompts in, one completion per prompt out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from tuneloop.infer.params import GenParams

Messages = list[dict[str, str]]


@runtime_checkable
class Generator(Protocol):
    """Anything that turns chat prompts into completions, one string per prompt, in order."""

    name: str

    def generate(self, prompts: list[Messages], params: GenParams) -> list[str]:
        """Return one completion per prompt (same order)."""
        ...


__all__ = ["GenParams", "Generator", "Messages"]
