"""In-process backend: a model reference loaded once and generated from in batches."""

from __future__ import annotations

import threading
from typing import Any

from tuneloop.backends.base import GenParams, Messages, Scored, TokenChoice
from tuneloop.infer.generate import generate, load_for_generation


class LocalGenerator:
    """Generates with `tuneloop.infer.generate` on a model reference (loaded on first use)."""

    def __init__(self, ref: str, batch_size: int = 8, device: str = "cpu"):
        self.ref = str(ref)
        self.name = f"local:{self.ref}"
        self.continues_prefix = True  # a final assistant message is continued (generate())
        self.batch_size = batch_size
        self.device = device
        self._loaded: tuple[Any, Any, Any] | None = None
        self._lock = threading.Lock()  # one model, one generation at a time

    def _load(self) -> tuple[Any, Any, Any]:
        if self._loaded is None:
            self._loaded = load_for_generation(self.ref, self.device)
        return self._loaded

    def generate(self, prompts: list[Messages], params: GenParams) -> list[str]:
        """One completion per prompt, batched `batch_size` at a time."""
        return [g.text for g in self._generate(prompts, params, None)]

    def generate_scored(self, prompts: list[Messages], params: GenParams,
                        top_logprobs: int) -> list[Scored]:
        """Completions with each token's log-probability and top alternatives (the decoder's)."""
        gens = self._generate(prompts, params, top_logprobs)
        if not gens:
            return []
        tokenizer = self._load()[1]
        text: dict[int, str] = {}

        def tok(i: int) -> str:
            if i not in text:
                text[i] = tokenizer.decode([i], skip_special_tokens=False)
            return text[i]

        return [Scored(g.text, tuple(
            TokenChoice(tok(e.id), e.logprob, tuple((tok(t), v) for t, v in e.top))
            for e in g.logprobs or ())) for g in gens]

    def _generate(self, prompts: list[Messages], params: GenParams,
                  logprobs: int | None) -> list[Any]:
        if not prompts:
            return []
        with self._lock:
            model, tokenizer, renderer = self._load()
            outs = generate(
                model,
                tokenizer,
                renderer,
                prompts,
                max_new_tokens=params.max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=params.seed,
                batch_size=self.batch_size,
                stop=list(params.stop) or None,
                progress=False,  # callers (judge, eval) show their own progress bar
                logprobs=logprobs,
            )
        return outs
