"""Backend for any OpenAI-compatible server (vLLM, llama.cpp, `tuneloop serve`, hosted APIs)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tuneloop.backends.base import GenParams, Messages, Scored, TokenChoice
from tuneloop.errors import ModelError


class OpenAIGenerator:
    """Chat completions over HTTP with retries/backoff on 429/5xx and a concurrency limit.

    Retries and exponential backoff (honouring Retry-After) come from the official `openai`
    client's `max_retries`; the thread pool bounds how many requests are in flight at once.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 600.0,
    ):
        import openai

        if max_concurrency < 1:
            raise ModelError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai:{self.base_url}#{model}"
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        # A local server without a key accepts any token; the client itself refuses None.
        api_key = os.environ.get(api_key_env) or "no-key"
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=api_key, max_retries=max_retries, timeout=timeout
        )

    def _one(self, messages: Messages, params: GenParams) -> str:
        return self._call(messages, params, None).choices[0].message.content or ""

    def _scored(self, messages: Messages, params: GenParams, top: int) -> Scored:
        choice = self._call(messages, params, top).choices[0]
        content = getattr(choice.logprobs, "content", None) if choice.logprobs else None
        tokens = None if not content else tuple(
            TokenChoice(t.token, t.logprob,
                        tuple((a.token, a.logprob) for a in (t.top_logprobs or ())))
            for t in content)
        return Scored(choice.message.content or "", tokens)

    def _call(self, messages: Messages, params: GenParams, top: int | None) -> Any:
        import openai

        extra: dict[str, Any] = {} if top is None else {"logprobs": True, "top_logprobs": top}
        try:
            return self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=params.seed,
                stop=list(params.stop) or None,
                **extra,
            )
        except openai.AuthenticationError as exc:
            raise ModelError(
                f"server refused the API key ({exc.status_code})",
                where=self.base_url,
                fix=f"set ${self.api_key_env} to the server's key",
            ) from exc
        except openai.APIStatusError as exc:
            raise ModelError(
                f"request failed with HTTP {exc.status_code} after retries: {exc.message}",
                where=self.base_url,
                fix="check the model name and parameters, or retry later",
            ) from exc
        except openai.APIConnectionError as exc:
            raise ModelError(
                f"cannot reach the server ({exc.__class__.__name__})",
                where=self.base_url,
                fix="check the URL (it usually ends in /v1) and that the server is running",
            ) from exc

    def generate(self, prompts: list[Messages], params: GenParams) -> list[str]:
        """One chat completion per prompt, at most `max_concurrency` requests in flight."""
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts))) as pool:
            return list(pool.map(lambda m: self._one(m, params), prompts))

    def generate_scored(self, prompts: list[Messages], params: GenParams,
                        top_logprobs: int) -> list[Scored]:
        """Chat completions asking for `logprobs` + `top_logprobs`; tokens None if not given."""
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts))) as pool:
            return list(pool.map(lambda m: self._scored(m, params, top_logprobs), prompts))
