"""Sampling parameters: one type, validated once, with one set of limits and one error class.

Every generating path takes a `GenParams`: the batched generator, streaming chat, the local and
OpenAI-compatible backends, and `tuneloop serve` (which builds one per request). A value out of
range raises `ParamError` (a `UsageError`) naming the field; each front end names the field its
own way (`ParamError.named`): the CLI as `--top-p`, `generate()` as its keyword, serve as the
request field in an OpenAI-style 400.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from tuneloop.errors import UsageError

MAX_TEMPERATURE = 2.0  # OpenAI's range; beyond it sampling is noise on any real model
MAX_STOP = 4  # stop strings per request (OpenAI's limit)
MAX_STOP_CHARS = 256  # characters per stop string
MAX_N = 16  # completions per prompt (serve's `n`)
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed accepts


class ParamError(UsageError):
    """A sampling parameter out of range; `field` is the GenParams name of the culprit."""

    def __init__(self, field: str, problem: str, *, fix: str, name: str | None = None):
        self.field = field
        self.problem = problem
        self.name = name or field
        super().__init__(f"{self.name} {problem}", fix=fix)

    def named(self, names: Mapping[str, str]) -> ParamError:
        """The same error with the field spelled as the caller's interface spells it."""
        return ParamError(self.field, self.problem, fix=self.fix or "",
                          name=names.get(self.field, self.name))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class GenParams:
    """How to sample one completion (temperature 0 = greedy); hashable, so it keys batches."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # Accept a list (or one string) for convenience; store a tuple so the object hashes.
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        object.__setattr__(self, "stop", stop)
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise ParamError("max_tokens", f"must be an integer ≥ 1, got {self.max_tokens!r}",
                             fix="ask for 1 or more new tokens")
        t = self.temperature
        if (isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t)
                or not 0.0 <= t <= MAX_TEMPERATURE):
            raise ParamError("temperature", f"must be in [0, {MAX_TEMPERATURE:g}], got {t!r}",
                             fix="use 0 for greedy decoding or a value up to 2 to sample")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 < p <= 1.0:
            raise ParamError("top_p", f"must be in (0, 1], got {p!r}", fix="e.g. 0.9, or 1 for all")
        if self.seed is not None and (not _is_int(self.seed)
                                      or not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]):
            raise ParamError("seed", f"must be a 64-bit integer, got {self.seed!r}",
                             fix="pass an integer seed, or none for a random one")
        if len(stop) > MAX_STOP:
            raise ParamError("stop", f"allows at most {MAX_STOP} strings, got {len(stop)}",
                             fix="keep the stop strings that matter most")
        for s in stop:
            if not isinstance(s, str) or not s:
                raise ParamError("stop", f"strings must be non-empty, got {s!r}",
                                 fix="drop the empty stop string")
            if len(s) > MAX_STOP_CHARS:
                raise ParamError("stop", f"strings are at most {MAX_STOP_CHARS} characters, got "
                                 f"{len(s)}", fix="shorten the stop string")

    @property
    def greedy(self) -> bool:
        """True when decoding takes the most likely token (temperature 0)."""
        return self.temperature == 0

    def sampling_key(self) -> tuple[float, float, int | None]:
        """What rows must share to decode in one batch (length and stops are per row)."""
        return (self.temperature, self.top_p, self.seed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (used in cache keys and judgment records)."""
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


def check_count(name: str, value: Any, limit: int | None = None) -> int:
    """Validate a count such as `n` or `batch_size` (≥ 1, at most `limit`) with ParamError."""
    if not _is_int(value) or value < 1 or (limit is not None and value > limit):
        bound = f"in [1, {limit}]" if limit is not None else "≥ 1"
        raise ParamError(name, f"must be an integer {bound}, got {value!r}",
                         fix=f"pass a {name} {bound}")
    return value


__all__ = ["MAX_N", "MAX_STOP", "MAX_TEMPERATURE", "GenParams", "ParamError", "check_count"]
