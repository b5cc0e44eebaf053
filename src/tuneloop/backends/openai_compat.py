"""Backend for any OpenAI-compatible server (vLLM, llama.cpp, `tuneloop serve`, hosted APIs)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from tuneloop.backends.base import GenParams, Messages
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
        import openai

        try:
            resp = self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=params.seed,
                stop=list(params.stop) or None,
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
        return resp.choices[0].message.content or ""

    def generate(self, prompts: list[Messages], params: GenParams) -> list[str]:
        """One chat completion per prompt, at most `max_concurrency` requests in flight."""
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts))) as pool:
            return list(pool.map(lambda m: self._one(m, params), prompts))
