"""Pydantic request models for the OpenAI-compatible endpoints (validation → 400 naming the field).

These check the shape of a request (types, required fields). The ranges of the sampling
parameters (temperature, top_p, max_tokens, stop, seed, n) are checked once, by
`tuneloop.infer.params.GenParams`, which every generating path uses.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TextPart(BaseModel):
    """One `{"type": "text", "text": ...}` content part (the only kind a text model can use)."""

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """A chat message; content is a string or a list of text parts."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart]

    def as_dict(self) -> dict[str, str]:
        """`{"role", "content"}` with text parts joined and `developer` treated as `system`."""
        text = self.content if isinstance(self.content, str) else "".join(
            p.text for p in self.content)
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": text}


class StreamOptions(BaseModel):
    """`stream_options`: only include_usage is meaningful here."""

    include_usage: bool = False


class SamplingFields(BaseModel):
    """The sampling fields both endpoints share (typed here; range-checked by GenParams)."""

    # Unknown OpenAI fields (user, logit_bias, ...) are ignored rather than refused, so generic
    # clients work; every parameter that changes sampling is range-checked by GenParams.
    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1)
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stop_tuple(self) -> tuple[str, ...]:
        """The stop strings as a tuple."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(SamplingFields):
    """POST /v1/chat/completions body."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class CompletionRequest(SamplingFields):
    """POST /v1/completions body: every prompt form the API allows.

    A string, a list of strings, a list of token ids (one prompt), or a list of token-id lists.
    Whether the ids are in the vocabulary is checked by the app, which knows the tokenizer.
    """

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str | list) -> str | list:
        if isinstance(v, list) and not v:
            raise ValueError("prompt list is empty")
        if isinstance(v, list) and any(isinstance(p, list) and not p for p in v):
            raise ValueError("a token-id prompt is empty")
        return v
