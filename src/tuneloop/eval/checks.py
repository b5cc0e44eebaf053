"""Suite checks: each one a small function `(output, arg, ctx) -> CheckResult`.

A check in a suite YAML is a one-key mapping, e.g. `- contains: Paris` or `- rouge-l: 0.5`.
`CHECKS` maps each name to its function and to a validator that turns the YAML value into the
argument the function takes (or raises ValueError with a message naming what is wrong), so a bad
suite fails when it is loaded, not halfway through generation.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any

NEEDS_JUDGE = "needs a judge"


@dataclass
class CheckResult:
    """The outcome of one check on one output; `needs_judge` marks a judge check left ungraded."""

    name: str
    passed: bool
    detail: str = ""
    needs_judge: bool = False

    def to_json(self) -> dict[str, Any]:
        """Plain dict for cases.jsonl."""
        return asdict(self)


# A judge callable: (rubric, prompt, output, reference) -> (passed, explanation).
JudgeFn = Callable[[str, str, str, "str | None"], "tuple[bool, str]"]


@dataclass
class CheckContext:
    """What a check may look at besides the output: the case's reference, prompt and a judge."""

    reference: str | None = None
    prompt: str = ""
    judge: JudgeFn | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckSpec:
    """A check's function, its argument validator and a one-line description (for docs/errors)."""

    fn: Callable[[str, Any, CheckContext], CheckResult]
    validate: Callable[[Any, bool], Any]
    doc: str


def _short(text: str, n: int = 60) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= n else text[: n - 1] + "…"


# --- validators: (yaml value, case has a reference) -> argument ---------------------------------


def _v_str(value: Any, has_ref: bool) -> str:
    if not isinstance(value, str) or value == "":
        raise ValueError(f"expects a non-empty string, got {value!r}")
    return value


def _v_str_list(value: Any, has_ref: bool) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise ValueError(f"expects a non-empty list of non-empty strings, got {value!r}")
    return value


def _v_regex(value: Any, has_ref: bool) -> re.Pattern:
    text = _v_str(value, has_ref)
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {text!r}: {exc}") from None


def _v_json(value: Any, has_ref: bool) -> dict | None:
    # `is-json: true` (any JSON) or `is-json: {schema: {...}}` (JSON valid against a schema).
    if value is True or value is None:
        return None
    if isinstance(value, dict) and set(value) == {"schema"} and isinstance(value["schema"], dict):
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(value["schema"])
        except SchemaError as exc:
            raise ValueError(f"invalid JSON schema: {exc.message}") from None
        return value["schema"]
    raise ValueError(f"expects `true` or `{{schema: {{...}}}}`, got {value!r}")


def _v_threshold(value: Any, has_ref: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"expects a threshold between 0 and 1, got {value!r}")
    if not has_ref:
        raise ValueError("needs the case to have a `reference` to compare against")
    return float(value)


def _v_positive_int(value: Any, has_ref: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expects a positive integer, got {value!r}")
    return value


def _v_python(value: Any, has_ref: bool) -> Any:
    return compile_expression(_v_str(value, has_ref))


# --- checks -------------------------------------------------------------------------------------


def check_equals(output: str, arg: str, ctx: CheckContext) -> CheckResult:
    """Output equals the text, ignoring leading/trailing whitespace."""
    ok = output.strip() == arg.strip()
    detail = "" if ok else f"expected {_short(arg)!r}, got {_short(output)!r}"
    return CheckResult("equals", ok, detail)


def check_contains(output: str, arg: str, ctx: CheckContext) -> CheckResult:
    """Output contains the text (case-sensitive)."""
    ok = arg in output
    return CheckResult("contains", ok, "" if ok else f"{_short(arg)!r} not found")


def check_icontains(output: str, arg: str, ctx: CheckContext) -> CheckResult:
    """Output contains the text, ignoring case."""
    ok = arg.casefold() in output.casefold()
    return CheckResult("icontains", ok, "" if ok else f"{_short(arg)!r} not found (any case)")


def check_not_contains(output: str, arg: str, ctx: CheckContext) -> CheckResult:
    """Output does not contain the text (case-sensitive)."""
    ok = arg not in output
    return CheckResult("not-contains", ok, "" if ok else f"{_short(arg)!r} found")


def check_contains_any(output: str, arg: list[str], ctx: CheckContext) -> CheckResult:
    """Output contains at least one of the texts."""
    ok = any(a in output for a in arg)
    return CheckResult("contains-any", ok, "" if ok else f"none of {arg!r} found")


def check_contains_all(output: str, arg: list[str], ctx: CheckContext) -> CheckResult:
    """Output contains every one of the texts."""
    missing = [a for a in arg if a not in output]
    return CheckResult("contains-all", not missing, f"missing {missing!r}" if missing else "")


def check_regex(output: str, arg: re.Pattern, ctx: CheckContext) -> CheckResult:
    """The regular expression matches somewhere in the output (re.search)."""
    ok = arg.search(output) is not None
    return CheckResult("regex", ok, "" if ok else f"/{arg.pattern}/ did not match")


def check_starts_with(output: str, arg: str, ctx: CheckContext) -> CheckResult:
    """Output starts with the text, after leading whitespace."""
    ok = output.lstrip().startswith(arg)
    return CheckResult("starts-with", ok, "" if ok else f"starts with {_short(output, 30)!r}")


_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n(.*?)\n?```$", re.DOTALL)


def check_is_json(output: str, arg: dict | None, ctx: CheckContext) -> CheckResult:
    """Output parses as JSON (one ``` fence allowed), optionally valid against a schema."""
    text = output.strip()
    fenced = _FENCE.match(text)
    if fenced:  # chat models habitually fence JSON; the content is what a caller would parse
        text = fenced.group(1).strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return CheckResult("is-json", False, f"not JSON: {exc.msg} at char {exc.pos}")
    if arg is not None:
        from jsonschema import Draft202012Validator

        errors = sorted(Draft202012Validator(arg).iter_errors(value), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
            return CheckResult("is-json", False, f"schema: {where}: {errors[0].message}")
    return CheckResult("is-json", True, "fenced" if fenced else "")


_ROUGE = None


def rouge_l(reference: str, output: str) -> float:
    """ROUGE-L F-measure of output against reference (rouge_score, no stemming)."""
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return _ROUGE.score(reference, output)["rougeL"].fmeasure


def check_rouge_l(output: str, arg: float, ctx: CheckContext) -> CheckResult:
    """ROUGE-L F-measure against the case's reference is at least the threshold."""
    score = rouge_l(ctx.reference or "", output)
    return CheckResult("rouge-l", score >= arg, f"rouge-l {score:.3f} (needs ≥ {arg:g})")


def check_max_words(output: str, arg: int, ctx: CheckContext) -> CheckResult:
    """Output has at most N whitespace-separated words."""
    n = len(output.split())
    return CheckResult("max-words", n <= arg, f"{n} words (max {arg})")


def check_python(output: str, arg: Any, ctx: CheckContext) -> CheckResult:
    """A user expression over `output` (`reference`, `prompt`, `words`, `re`, `json`) is true."""
    try:
        value = eval_expression(arg, output=output, reference=ctx.reference, prompt=ctx.prompt)
    except Exception as exc:  # noqa: BLE001 - the user's expression failing is a failed check
        return CheckResult("python", False, f"raised {type(exc).__name__}: {exc}")
    detail = "" if value else f"expression was {_short(repr(value))}"
    return CheckResult("python", bool(value), detail)


def check_judge(output: str, arg: str, ctx: CheckContext) -> CheckResult:
    """An LLM judge grades the output against the rubric; without a judge: 'needs a judge'."""
    if ctx.judge is None:
        # Never a pass: a suite that needs a judge and has none must not look green.
        return CheckResult("judge", False, NEEDS_JUDGE, needs_judge=True)
    ok, why = ctx.judge(arg, ctx.prompt, output, ctx.reference)
    return CheckResult("judge", bool(ok), why)


CHECKS: dict[str, CheckSpec] = {
    "equals": CheckSpec(check_equals, _v_str, "output equals the text (ends stripped)"),
    "contains": CheckSpec(check_contains, _v_str, "output contains the text"),
    "icontains": CheckSpec(check_icontains, _v_str, "output contains the text, any case"),
    "not-contains": CheckSpec(check_not_contains, _v_str, "output does not contain the text"),
    "contains-any": CheckSpec(check_contains_any, _v_str_list, "output contains one of the texts"),
    "contains-all": CheckSpec(check_contains_all, _v_str_list, "output contains all the texts"),
    "regex": CheckSpec(check_regex, _v_regex, "regular expression found (re.search)"),
    "starts-with": CheckSpec(check_starts_with, _v_str, "output starts with the text"),
    "is-json": CheckSpec(check_is_json, _v_json, "output is JSON (optionally matching a schema)"),
    "rouge-l": CheckSpec(check_rouge_l, _v_threshold, "ROUGE-L F vs reference ≥ threshold"),
    "max-words": CheckSpec(check_max_words, _v_positive_int, "at most N words"),
    "python": CheckSpec(check_python, _v_python, "Python expression over `output` is true"),
    "judge": CheckSpec(check_judge, _v_str, "LLM judge grades the rubric"),
}


def run_check(name: str, arg: Any, output: str, ctx: CheckContext) -> CheckResult:
    """Run one (validated) check on an output."""
    return CHECKS[name].fn(output, arg, ctx)


# --- the `python` check's sandbox ---------------------------------------------------------------
# A suite is the user's own file, so its expressions are trusted code; the sandbox is there to keep
# accidents (a typo reaching for open(), __import__, os) from doing harm, not to contain malice.

SAFE_BUILTINS: dict[str, Any] = {
    name: getattr(builtins, name)
    for name in (
        "abs", "all", "any", "bool", "dict", "enumerate", "filter", "float", "int", "isinstance",
        "len", "list", "map", "max", "min", "range", "reversed", "round", "set", "sorted", "str",
        "sum", "tuple", "zip", "True", "False", "None",
    )
}


@dataclass(frozen=True)
class CompiledExpression:
    """A validated, compiled `python` check expression and its source text."""

    source: str
    code: Any


def compile_expression(source: str) -> CompiledExpression:
    """Parse and vet a check expression: one expression, no dunder names or attributes."""
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"invalid Python expression {source!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.Name):
            name = node.id
        if name is not None and name.startswith("_"):
            raise ValueError(
                f"expression {source!r} uses {name!r}; names starting with '_' are not allowed"
            )
    return CompiledExpression(source, compile(tree, "<suite python check>", "eval"))


# Only the functions an expression needs, not the modules: `re`/`json` modules reach further
# (json.codecs.open opens files).
_SAFE_RE = SimpleNamespace(
    search=re.search, match=re.match, fullmatch=re.fullmatch, findall=re.findall, sub=re.sub,
    split=re.split, IGNORECASE=re.IGNORECASE, I=re.IGNORECASE, MULTILINE=re.MULTILINE,
    M=re.MULTILINE, DOTALL=re.DOTALL, S=re.DOTALL,
)
_SAFE_JSON = SimpleNamespace(loads=json.loads, dumps=json.dumps)


def eval_expression(expr: CompiledExpression, **names: Any) -> Any:
    """Evaluate a compiled expression with only SAFE_BUILTINS, `re`, `json` and the given names."""
    output = names.get("output") or ""
    namespace = {
        "__builtins__": SAFE_BUILTINS, "re": _SAFE_RE, "json": _SAFE_JSON, "words": output.split()
    }
    namespace.update(names)
    return eval(expr.code, namespace)  # vetted AST, whitelisted builtins (see above)
