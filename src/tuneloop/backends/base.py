"""What every generator backend is: chat prompts in, one completion per prompt out.

A backend may also offer `generate_scored`: the same completions with, for every generated token,
its log-probability and the `top_logprobs` most likely tokens at that position (the local backend
reads them from the decoder's logits; an OpenAI-compatible one asks for `top_logprobs`). The
judge reads verdict probabilities this way; `scored_generate` is the one entry point, and answers
`tokens=None` for a backend (or server) that gives no log-probabilities.

A prompt whose last message is from the assistant is a prefix to continue where the backend
says so (`continues_prefix = True`: the local backend renders the conversation up to that message
and appends its text); an OpenAI-compatible server starts a new reply instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tuneloop.infer.params import GenParams

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class TokenChoice:
    """One generated token: its text, log-probability and the top alternatives (text, logprob)."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Scored:
    """A completion with per-token log-probabilities (`tokens` None: the backend gave none)."""

    text: str
    tokens: tuple[TokenChoice, ...] | None


@runtime_checkable
class Generator(Protocol):
    """Anything that turns chat prompts into completions, one string per prompt, in order."""

    name: str

    def generate(self, prompts: list[Messages], params: GenParams) -> list[str]:
        """Return one completion per prompt (same order)."""
        ...


def scored_generate(gen: Generator, prompts: list[Messages], params: GenParams,
                    top_logprobs: int) -> list[Scored]:
    """Completions with token log-probabilities where `gen` offers them, else text only."""
    method = getattr(gen, "generate_scored", None)
    if method is None:
        return [Scored(text, None) for text in gen.generate(prompts, params)]
    return method(prompts, params, top_logprobs)


__all__ = ["GenParams", "Generator", "Messages", "Scored", "TokenChoice", "scored_generate"]
