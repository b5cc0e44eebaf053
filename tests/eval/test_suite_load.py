"""Suite YAML loading: every shipped suite loads; mistakes name file:line, case id and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneloop.errors import EvalError
from tuneloop.eval.checks import CHECKS
from tuneloop.eval.suite import load_suite

ROOT = Path(__file__).resolve().parents[2]
# example suites, plus suites shipped inside the package (the demo's held-out suite)
SHIPPED = sorted((ROOT / "examples" / "suites").glob("*.yaml")) + sorted(
    (ROOT / "src" / "tuneloop" / "resources").glob("**/suite*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_suites_load(path):
    """Every shipped suite validates."""
    suite = load_suite(path)
    assert suite.cases and suite.source == str(path)


def test_example_suite_uses_every_check():
    """examples/suites/example.yaml exercises each check type."""
    suite = load_suite(ROOT / "examples" / "suites" / "example.yaml")
    used = {c.name for case in suite.cases for c in case.checks}
    assert used == set(CHECKS)
    assert suite.needs_judge


def write(tmp_path, text):
    path = tmp_path / "suite.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path) -> str:
    with pytest.raises(EvalError) as info:
        load_suite(path)
    return info.value.message()


def test_unknown_key_and_check_named_with_line_and_case(tmp_path):
    """Typos are errors naming file:line, the case id and a did-you-mean."""
    path = write(tmp_path, """\
name: t
cases:
  - id: first
    prompt: hi
    checks:
      - contains: x
  - id: second
    promt: hi
    checks:
      - contains: x
      - icontain: y
""")
    msg = error_of(path)
    assert f"{path}:8 (case 'second'): unknown key 'promt' (did you mean 'prompt'?)" in msg
    assert f"{path}:11 (case 'second'): checks[1]: unknown check 'icontain'" in msg
    assert "did you mean 'icontains'?" in msg


def test_bad_check_values_reported_together(tmp_path):
    """All bad checks of a case are reported at once; rouge-l without reference is refused."""
    msg = error_of(write(tmp_path, """\
name: t
cases:
  - prompt: hi
    checks:
      - rouge-l: 0.5
      - regex: "("
"""))
    assert "(case 'case-1')" in msg
    assert "rouge-l: needs the case to have a `reference`" in msg
    assert "regex: invalid regular expression" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: t\ncases: []\n", "at least one case"),
        (("name: t\ncases:\n  - prompt: a\n    messages: [{role: user, content: b}]\n"
         "    checks: [{contains: x}]\n"), "exactly one of `prompt` or `messages`"),
        (("name: t\ncases:\n  - messages: [{role: user, content: a}, {role: assistant, content: b}]"
         "\n    checks: [{contains: x}]\n"), "must end with a user turn"),
        (("name: t\ncases:\n  - {id: a, prompt: x, checks: [{contains: x}]}\n"
         "  - {id: a, prompt: y, checks: [{contains: y}]}\n"), "duplicate case id 'a'"),
        ("name: t\ncases:\n  - {prompt: x, checks: []}\n", "non-empty list of checks"),
        ("name: t\ncases:\n  - {prompt: x, checks: [{contains: a, icontains: b}]}\n",
         "one-key mapping"),
        ("name: t\nthreshold: 2\ncases:\n  - {prompt: x, checks: [{contains: a}]}\n",
         "threshold"),
        ("name: t\nthreshhold: 0.5\ncases:\n  - {prompt: x, checks: [{contains: a}]}\n",
         "did you mean 'threshold'"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("name: t\ncases: [\n", "not valid YAML"),
    ],
)
def test_malformed_suites(tmp_path, text, expected):
    """Each malformed suite gives one clear EvalError."""
    assert expected in error_of(write(tmp_path, text))


def test_missing_file(tmp_path):
    """A missing suite path says so."""
    assert "suite file not found" in error_of(tmp_path / "nope.yaml")


def test_system_prompt_precedence_and_few_shot():
    """Case system > caller's system prompt > suite system; few-shot turns go before the case."""
    from tuneloop.eval.suite import suite_from_dict

    suite = suite_from_dict({
        "name": "t", "system": "suite sys",
        "cases": [
            {"id": "own", "system": "own sys", "prompt": "a", "checks": [{"contains": "x"}]},
            {"id": "inherit", "prompt": "b", "checks": [{"contains": "x"}]},
        ],
    })
    own, inherit = suite.cases
    shots = [[{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]]
    assert suite.messages_for(own, system_prompt="cli sys", few_shot=shots) == [
        {"role": "system", "content": "own sys"}, *shots[0], {"role": "user", "content": "a"}]
    assert suite.messages_for(inherit, system_prompt="cli sys")[0]["content"] == "cli sys"
    assert suite.messages_for(inherit)[0]["content"] == "suite sys"
    bare = suite_from_dict({"name": "t", "cases": [{"prompt": "b", "checks": [{"contains": "x"}]}]})
    assert bare.messages_for(bare.cases[0]) == [{"role": "user", "content": "b"}]
