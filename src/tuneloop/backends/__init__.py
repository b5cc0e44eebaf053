"""Generator backends: one small interface for every component that needs model text.

Eval suites, the judge and data generation all call `make_generator(spec).generate(prompts,
params)`. A spec names a backend the same way everywhere (CLI flags and config files):

- a model reference (`smollm2-135m-instruct`, a local HF dir, a run dir, a hub id) → in-process;
- `extractive` → no model: document-grounded questions by rule (backends/extractive.py), for
  offline rounds where no capable model is at hand;
- `openai:<base_url>#<model>` → any OpenAI-compatible server (API key from $OPENAI_API_KEY);
- a mapping `{"type": "local", "ref": ...}` or `{"type": "openai", "base_url": ..., "model": ...,
  "api_key_env": ..., "max_concurrency": ..., "max_retries": ..., "cache": ...}`.

`GenParams` (the one sampling-parameters type) is defined in `tuneloop.infer.params` and
re-exported here.
"""

from __future__ import annotations

from typing import Any

from tuneloop.backends.base import Generator, Messages, Scored, TokenChoice, scored_generate
from tuneloop.backends.cache import CachedGenerator
from tuneloop.backends.extractive import NAME as EXTRACTIVE
from tuneloop.backends.extractive import ExtractiveGenerator
from tuneloop.backends.local import LocalGenerator
from tuneloop.backends.openai_compat import OpenAIGenerator
from tuneloop.errors import ConfigError
from tuneloop.infer.params import GenParams

_OPENAI_KEYS = {"type", "base_url", "model", "api_key_env", "max_concurrency", "max_retries",
                "timeout", "cache"}
_LOCAL_KEYS = {"type", "ref", "batch_size", "device", "cache"}


def parse_spec(spec: str | dict[str, Any]) -> dict[str, Any]:
    """Normalise a backend spec (string or mapping) into a mapping with a `type` key."""
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise ConfigError("empty generator spec", fix="pass a model reference or "
                              "openai:<base_url>#<model>")
        if text == EXTRACTIVE:
            return {"type": EXTRACTIVE}
        if text.startswith("openai:"):
            url, sep, model = text[len("openai:"):].partition("#")
            if not sep or not model or not url:
                raise ConfigError(
                    f"OpenAI-compatible spec {text!r} lacks a base URL or model name",
                    fix="write it as openai:http://127.0.0.1:8000/v1#model-name",
                )
            return {"type": "openai", "base_url": url, "model": model}
        return {"type": "local", "ref": text}
    if isinstance(spec, dict):
        kind = spec.get("type")
        if kind == EXTRACTIVE:
            return {"type": EXTRACTIVE}
        allowed = {"openai": _OPENAI_KEYS, "local": _LOCAL_KEYS}.get(kind)  # type: ignore[arg-type]
        if allowed is None:
            raise ConfigError(f"generator type {kind!r} is not known",
                              fix="use type: local (with ref) or type: openai (with base_url, model)")
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ConfigError(f"unknown key(s) {unknown} in {kind} generator spec",
                              fix=f"allowed keys: {sorted(allowed)}")
        required = ("base_url", "model") if kind == "openai" else ("ref",)
        missing = [k for k in required if not spec.get(k)]
        if missing:
            raise ConfigError(f"{kind} generator spec lacks {missing}")
        return dict(spec)
    raise ConfigError(f"generator spec must be a string or mapping, got {type(spec).__name__}")


def make_generator(spec: str | dict[str, Any]) -> Generator:
    """Build the backend a spec names (model ref, `openai:URL#model`, or a config mapping)."""
    conf = parse_spec(spec)
    kind = conf.pop("type")
    cache = conf.pop("cache", None)
    if kind == EXTRACTIVE:
        return ExtractiveGenerator()  # rule-based and instant: nothing worth caching
    if kind == "openai":
        gen: Generator = OpenAIGenerator(**conf)
        cache = True if cache is None else cache  # remote calls cost money/time: cache by default
    else:
        gen = LocalGenerator(**conf)
    if cache:
        gen = CachedGenerator(gen, path=None if cache is True else cache)
    return gen


__all__ = ["EXTRACTIVE", "ExtractiveGenerator", "GenParams", "Generator", "Messages", "Scored", "TokenChoice", "make_generator",
           "parse_spec", "scored_generate"]
