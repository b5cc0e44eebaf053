"""Task test suites: strict YAML loading and the suite definition (cases, checks, threshold).

A suite file:

    name: support-bot
    threshold: 0.8          # weighted share of cases that must pass (default 1.0)
    judge: null             # model ref or openai:URL#model for `judge` checks
    max_new_tokens: 256
    system: null            # default system prompt (a case's own `system` or --system-prompt wins)
    cases:
      - id: capital
        prompt: What is the capital of France?     # or messages: [{role, content}, ...]
        reference: Paris
        tags: [geo]
        weight: 1
        checks:
          - icontains: paris
          - max-words: 30

Unknown keys and unknown check names are errors that name the file, line and case id.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tuneloop.errors import EvalError
from tuneloop.eval.checks import CHECKS
from tuneloop.yamllines import yaml_key_lines


class Check(BaseModel):
    """One validated check: its name (a key of CHECKS), its YAML value and the prepared argument."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    value: Any = None
    arg: Any = None


class Message(BaseModel):
    """A chat turn in a case's `messages`."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(description="system, user or assistant.")
    content: str = Field(description="The turn's text.")

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if value not in ("system", "user", "assistant"):
            raise ValueError(f"role must be system, user or assistant, got {value!r}")
        return value


class Case(BaseModel):
    """One test case: a prompt (or messages), optional reference, tags, weight and checks."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique id within the suite (default case-<n>).")
    prompt: str | None = Field(None, description="The user message (or use `messages`).")
    messages: list[Message] | None = Field(None, description="Turns ending with a user turn.")
    system: str | None = Field(None, description="System prompt for this case.")
    reference: str | None = Field(None, description="Reference answer (rouge-l, judge).")
    tags: list[str] = Field(default_factory=list, description="Labels for per-tag pass rates.")
    weight: float = Field(1.0, gt=0, description="Weight in the suite score.")
    max_new_tokens: int | None = Field(None, gt=0, description="Overrides the suite's value.")
    checks: list[Check] = Field(description="Checks that must all pass for the case to pass.")

    @field_validator("checks", mode="before")
    @classmethod
    def _checks(cls, value: Any) -> list[Check]:
        if not isinstance(value, list) or not value:
            raise ValueError("needs a non-empty list of checks, e.g. `- contains: Paris`")
        return [_parse_check(item, i) for i, item in enumerate(value)]

    @model_validator(mode="after")
    def _shape(self) -> Case:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of `prompt` or `messages`")
        if self.messages is not None:
            if not self.messages or self.messages[-1].role != "user":
                raise ValueError("`messages` must end with a user turn (the model answers it)")
            if self.system is not None and any(m.role == "system" for m in self.messages):
                raise ValueError("give the system prompt once: `system` or a system message")
        has_ref = self.reference is not None
        prepared, problems = [], []
        for i, check in enumerate(self.checks):
            try:
                arg = CHECKS[check.name].validate(check.value, has_ref)
            except ValueError as exc:
                problems.append(f"checks[{i}] {check.name}: {exc}")
                continue
            prepared.append(Check(name=check.name, value=check.value, arg=arg))
        if problems:  # report every bad check at once, not one per reload
            raise ValueError("; ".join(problems))
        self.__dict__["checks"] = prepared  # bypass re-validation of the prepared checks
        return self

    def messages_for(
        self,
        *,
        system_prompt: str | None = None,
        few_shot: list[list[dict[str, str]]] | None = None,
    ) -> list[dict[str, str]]:
        """The chat prompt: system (case's own, else the given one), few-shot turns, the case."""
        turns = (
            [m.model_dump() for m in self.messages]
            if self.messages is not None
            else [{"role": "user", "content": self.prompt}]
        )
        own_system = [t for t in turns if t["role"] == "system"]
        turns = [t for t in turns if t["role"] != "system"]
        system = own_system[0]["content"] if own_system else (self.system or system_prompt)
        out = [{"role": "system", "content": system}] if system else []
        for example in few_shot or []:
            out.extend(dict(t) for t in example)
        return out + turns

    @property
    def user_prompt(self) -> str:
        """The last user message (what a judge is shown as the question)."""
        if self.prompt is not None:
            return self.prompt
        return self.messages[-1].content if self.messages else ""


class Suite(BaseModel):
    """A whole suite: cases, pass threshold, optional judge and generation length."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Suite name (recorded in the index).")
    description: str = Field("", description="What the suite tests.")
    threshold: float = Field(1.0, ge=0, le=1, description="Weighted pass share needed to pass.")
    judge: str | None = Field(None, description="Judge model ref or openai:URL#model.")
    system: str | None = Field(None, description="Default system prompt (case/caller's wins).")
    max_new_tokens: int = Field(256, gt=0, description="Generation length per case.")
    cases: list[Case] = Field(description="The test cases.")

    source: str = Field("<memory>", exclude=True, description="File the suite came from.")

    @field_validator("cases", mode="before")
    @classmethod
    def _default_ids(cls, value: Any) -> Any:
        if isinstance(value, list):
            for i, case in enumerate(value):
                if isinstance(case, dict) and "id" not in case:
                    case["id"] = f"case-{i + 1}"
        return value

    @model_validator(mode="after")
    def _unique(self) -> Suite:
        if not self.cases:
            raise ValueError("a suite needs at least one case")
        seen: set[str] = set()
        for case in self.cases:
            if case.id in seen:
                raise ValueError(f"duplicate case id {case.id!r}")
            seen.add(case.id)
        return self

    def messages_for(
        self, case: Case, *, system_prompt: str | None = None,
        few_shot: list[list[dict[str, str]]] | None = None,
    ) -> list[dict[str, str]]:
        """A case's chat prompt; system: the case's own, else the caller's, else the suite's."""
        return case.messages_for(system_prompt=system_prompt or self.system, few_shot=few_shot)

    @property
    def needs_judge(self) -> bool:
        """True if any case has a `judge` check."""
        return any(c.name == "judge" for case in self.cases for c in case.checks)


def _parse_check(item: Any, index: int) -> Check:
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError(
            f"checks[{index}] must be a one-key mapping like `- contains: Paris`, got {item!r}"
        )
    (name, value), = item.items()
    if name not in CHECKS:
        close = difflib.get_close_matches(str(name), list(CHECKS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(CHECKS)})"
        raise ValueError(f"checks[{index}]: unknown check '{name}'{hint}")
    return Check(name=name, value=value)


# --- loading ------------------------------------------------------------------------------------


def _known_fields(loc: tuple[str, ...]) -> list[str]:
    if len(loc) >= 3 and loc[0] == "cases" and loc[2] == "messages":
        return list(Message.model_fields)
    if len(loc) >= 2 and loc[0] == "cases":
        return list(Case.model_fields)
    return [f for f in Suite.model_fields if f != "source"]


def _describe(error: dict, source: str, data: dict, lines: dict[tuple[str, ...], int]) -> str:
    loc = tuple(str(p) for p in error["loc"])
    msg = str(error["msg"]).removeprefix("Value error, ")
    # pydantic wraps validator messages as "Value error, ..."; keep just ours
    index = re.match(r"checks\[(\d+)\]", msg)
    if index and loc[-1:] != ("checks",):
        loc = (*loc, "checks")
    if index:  # point at the check's own line, not the case's
        loc = (*loc, index.group(1))
    where = source
    for cut in range(len(loc), 0, -1):
        if loc[:cut] in lines:
            where = f"{source}:{lines[loc[:cut]]}"
            break
    case_text = ""
    if len(loc) >= 2 and loc[0] == "cases" and loc[1].isdigit():
        cases = data.get("cases") or []
        index = int(loc[1])
        case_id = cases[index].get("id") if index < len(cases) and isinstance(
            cases[index], dict) else None
        case_text = f" (case {case_id!r})" if case_id else f" (case #{index + 1})"
        loc = loc[2:]
    if error["type"] == "extra_forbidden":
        key = loc[-1]
        known = _known_fields(tuple(str(p) for p in error["loc"]))
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"
        return f"{where}{case_text}: unknown key '{key}'{hint}"
    field = ".".join(loc)
    # our validators already name the check (checks[2] ...); don't repeat the field path
    field_text = f"{field}: " if field and not index else ""
    return f"{where}{case_text}: {field_text}{msg}"


def load_suite(path: str | Path) -> Suite:
    """Load and validate a suite YAML; EvalError naming file:line and case id when it is wrong."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise EvalError(f"suite file not found: {path}", fix="pass the path of a suite YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EvalError(f"not UTF-8 text (byte {exc.start})", where=source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise EvalError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}", where=where,
            fix="check indentation and quoting (quote strings containing ': ' or '#')",
        ) from None
    if not isinstance(data, dict):
        raise EvalError("a suite must be a YAML mapping with `name` and `cases`", where=source,
                        fix="see examples/suites/example.yaml")
    return suite_from_dict(data, source=source, text=text)


def suite_from_dict(data: dict[str, Any], *, source: str = "<memory>", text: str = "") -> Suite:
    """Validate a suite given as a mapping (what load_suite does after parsing the YAML)."""
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        lines = yaml_key_lines(text) if text else {}
        problems = [_describe(e, source, data, lines) for e in exc.errors()]
        what = problems[0] if len(problems) == 1 else "\n  ".join(
            [f"{len(problems)} problems in the suite:", *problems])
        raise EvalError(what, fix="see docs/eval.md for the suite format") from None
    suite.source = source
    return suite
