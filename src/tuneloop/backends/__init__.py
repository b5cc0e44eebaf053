"""Generator backends: one small interface for every component that needs model text.

Eval suites, the judge and data generation all call `make_generator(spec).generate(prompts,
params)`. A spec names a backend the same way everywhere (CLI flags and config files):

- a model reference (`smollm2-135m-instruct`, a local HF dir, a run dir, a hub id) → in-process;
- `openai:<base_url>#<model>` → any OpenAI-compatible server (API key from $OPENAI_API_KEY);
- a mapping `{"type": "local", "ref": ...}` or `{"type": "openai", "base_url": ..., "model": ...,
  "api_key_env": ..., "max_concurrency": ..., "max_retries": ..., "cache": ...}`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from tuneloop.errors import ConfigError

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class GenParams:
    """Sampling parameters shared by every backend (temperature 0 = greedy)."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # Accept a list for convenience but keep the dataclass hashable (it keys batches/caches).
        object.__setattr__(self, "stop", tuple(self.stop or ()))
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ConfigError(f"temperature must be in [0, 2], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used in cache keys and judgment records)."""
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@runtime_checkable
class Generator(Protocol):
    """Anything that turns chat prompts into completions, one string per prompt, in order."""

    name: str

    def generate(self, prompts: list[Messages], params: GenParams) -> list[str]:
        """Return one completion per prompt (same order)."""
        ...


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
    if kind == "openai":
        from tuneloop.backends.openai_compat import OpenAIGenerator

        gen: Generator = OpenAIGenerator(**conf)
        cache = True if cache is None else cache  # remote calls cost money/time: cache by default
    else:
        from tuneloop.backends.local import LocalGenerator

        gen = LocalGenerator(**conf)
    if cache:
        from tuneloop.backends.cache import CachedGenerator

        gen = CachedGenerator(gen, path=None if cache is True else cache)
    return gen


__all__ = ["GenParams", "Generator", "Messages", "make_generator", "parse_spec"]
