"""Search-space parameters of `tuneloop sweep`: `--param KEY=SPEC` parsed, checked against the
training config, and sampled from an Optuna trial.

SPEC is one of
    log:LOW..HIGH     a float, log-uniform (LOW > 0), e.g. training.learning_rate=log:1e-5..1e-2
    float:LOW..HIGH   a float, uniform, e.g. lora.dropout=float:0..0.2
    int:LOW..HIGH     an integer, uniform, both ends included, e.g. training.epochs=int:1..3
    A,B,C             one of the listed values (YAML scalars), e.g. lora.r=8,16,32
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneloop.errors import ConfigError
from tuneloop.train.config import TrainConfig, load_config

SYNTAX = ("write KEY=log:1e-5..1e-2, KEY=float:0..0.2, KEY=int:1..3 or KEY=8,16,32 "
          "(one fixed value is --set KEY=VALUE)")
KINDS = ("log", "float", "int")


@dataclass(frozen=True)
class Param:
    """One searched key: a range (kind log/float/int, low, high) or choices (kind choice)."""

    key: str
    kind: str  # log | float | int | choice
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()

    def candidates(self) -> list[Any]:
        """Values that must all validate: every choice, or the ends of a range plus (for a
        float range) a value inside it, so a float range over an integer setting is caught."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return [self.low, self.high]
        inside = (math.sqrt(self.low * self.high) if self.kind == "log"
                  else self.low + 0.37 * (self.high - self.low))
        return [self.low, inside, self.high]

    def suggest(self, trial: Any) -> Any:
        """Sample this parameter from an Optuna trial (the key is the Optuna name)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high))
        return trial.suggest_float(self.key, float(self.low), float(self.high),
                                   log=self.kind == "log")

    def to_json(self) -> dict[str, Any]:
        """How sweep.json records the search space."""
        if self.kind == "choice":
            return {"key": self.key, "kind": "choice", "choices": list(self.choices)}
        return {"key": self.key, "kind": self.kind, "low": self.low, "high": self.high}


def _bad(text: str, why: str) -> ConfigError:
    return ConfigError(f"--param {text}: {why}", fix=SYNTAX)


def _number(text: str, raw: str, kind: str) -> float | int:
    try:
        value = int(raw) if kind == "int" else float(raw)
    except ValueError:
        raise _bad(text, f"{raw.strip()!r} is not {'an integer' if kind == 'int' else 'a number'}"
                   ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(text, f"{raw.strip()!r} is not a finite number")
    return value


def _choice(text: str, raw: str) -> Any:
    """One listed value: a number if it reads as one, else a YAML scalar (true, null, cosine)."""
    raw = raw.strip()
    if not raw:
        raise _bad(text, "a choice is empty")
    for kind in (int, float):  # before YAML, which reads 1e-5 (no dot) as a string
        try:
            value = kind(raw)
        except ValueError:
            continue
        if isinstance(value, int) or math.isfinite(value):
            return value
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw  # not YAML: the text itself
    if isinstance(value, (dict, list)):
        raise _bad(text, f"choice {raw!r} is not a single value")
    return value


def parse_param(text: str) -> Param:
    """`KEY=SPEC` → Param; ConfigError (with the syntax as the fix) if it does not parse."""
    key, sep, spec = text.partition("=")
    key, spec = key.strip(), spec.strip()
    if not sep or not key or not spec:
        raise _bad(text, "expected KEY=SPEC")
    if any(not part for part in key.split(".")):
        raise _bad(text, f"{key!r} has an empty part")
    kind, colon, bounds = spec.partition(":")
    if colon and kind in KINDS:
        low_raw, dots, high_raw = bounds.partition("..")
        if not dots:
            raise _bad(text, f"a {kind} range is LOW..HIGH, got {bounds!r}")
        low, high = _number(text, low_raw, kind), _number(text, high_raw, kind)
        if not low < high:
            raise _bad(text, f"LOW must be below HIGH (got {low} and {high})")
        if kind == "log" and low <= 0:
            raise _bad(text, f"a log range needs LOW > 0 (got {low}); use float:LOW..HIGH")
        return Param(key, kind, low, high)
    if colon and "," not in spec:
        raise _bad(text, f"unknown range kind {kind!r} (known: {', '.join(KINDS)})")
    if "," not in spec:
        raise _bad(text, f"{spec!r} is neither a range nor a list of two or more choices")
    choices = [_choice(text, raw) for raw in spec.split(",")]
    if len(set(map(json.dumps, choices))) != len(choices):
        raise _bad(text, "a choice is listed twice")
    return Param(key, "choice", choices=tuple(choices))


def _check_key(key: str) -> Any:
    """The type of the TrainConfig setting the dotted key names; ConfigError for an unknown key
    or a section."""
    model: Any = TrainConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = getattr(model, "model_fields", None)
        if fields is None:
            raise ConfigError(f"--param {key}: '{'.'.join(parts[:i])}' is a value, not a section",
                              fix="search a setting such as lora.r")
        if part not in fields:
            close = difflib.get_close_matches(part, list(fields), n=1)
            hint = (f" (did you mean '{close[0]}'?)" if close
                    else f" (known keys: {', '.join(fields)})")
            raise ConfigError(f"--param: unknown key '{key}'{hint}",
                              fix="see docs/training.md for every key")
        model = fields[part].annotation
    if hasattr(model, "model_fields"):
        raise ConfigError(f"--param {key}: '{key}' is a section, not a setting",
                          fix=f"search one of its keys, e.g. {key}."
                          f"{next(iter(model.model_fields))}")
    return model


def as_override(key: str, value: Any) -> str:
    """`key=value` in the --set syntax (the value as YAML flow, so types survive)."""
    return f"{key}={json.dumps(value)}"


def format_values(values: dict[str, Any]) -> str:
    """`key=value, ...` with floats to 4 significant digits (how the CLI shows a trial)."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in values.items())


def parse_params(texts: list[str] | tuple[str, ...], config_path: str | Path,
                 overrides: list[str] | tuple[str, ...] = ()) -> list[Param]:
    """Parse every --param and check it against the config: the key exists, is not also a
    --set, is searched once, and each end of its range (each choice) validates."""
    from tuneloop.train.config import parse_override

    if not texts:
        raise ConfigError("nothing to search: no --param", fix=SYNTAX)
    params = [parse_param(t) for t in texts]
    fixed = {".".join(parse_override(o)[0]) for o in overrides}
    seen: set[str] = set()
    for p in params:
        annotation = _check_key(p.key)
        if p.key in seen:
            raise ConfigError(f"--param {p.key} is given twice", fix="give each key one --param")
        if p.key in fixed:
            raise ConfigError(f"{p.key} is both searched (--param) and fixed (--set)",
                              fix="drop one of them")
        seen.add(p.key)
        if annotation is int and p.kind in ("float", "log"):
            raise ConfigError(f"--param {p.key}: a {p.kind} range over an integer setting",
                              fix=f"write {p.key}=int:{int(p.low)}..{int(p.high)} or list the "
                                  f"values ({p.key}=8,16,32)")
        for value in p.candidates():
            try:
                load_config(config_path, [*overrides, as_override(p.key, value)])
            except ConfigError as exc:
                # load_config says "invalid config:" then one "--set: key: why" line per problem
                why = "; ".join(line.strip().removeprefix("--set: ")
                                for line in exc.what.splitlines()[1:]) or exc.what
                raise ConfigError(f"--param {p.key}: {value!r} is not a valid value ({why})",
                                  fix="drop that choice" if p.kind == "choice" else
                                  "narrow the range to values the setting accepts") from None
    return params
