"""Each suite check, positive and negative, plus the python-expression sandbox."""

from __future__ import annotations

import pytest

from tuneloop.eval.checks import CHECKS, NEEDS_JUDGE, CheckContext, rouge_l, run_check


def check(name, value, output, *, reference=None, judge=None):
    """Validate the YAML value as the loader does, then run the check."""
    arg = CHECKS[name].validate(value, reference is not None)
    return run_check(name, arg, output, CheckContext(reference=reference, prompt="q", judge=judge))


@pytest.mark.parametrize(
    ("name", "value", "good", "bad"),
    [
        ("equals", "Paris", "  Paris\n", "Paris."),
        ("contains", "Paris", "It is Paris.", "It is paris."),
        ("icontains", "PARIS", "It is paris.", "It is Lyon."),
        ("not-contains", "London", "Paris", "London calling"),
        ("contains-any", ["cat", "dog"], "a dog", "a fox"),
        ("contains-all", ["cat", "dog"], "cat and dog", "cat only"),
        ("regex", r"\b\d{4}\b", "in 1994.", "in 19945"),
        ("starts-with", "Answer:", "  Answer: yes", "The Answer: yes"),
        ("is-json", True, '{"a": 1}', "{'a': 1}"),
        ("max-words", 3, "one two three", "one two three four"),
        ("python", "len(words) == 2 and output.endswith('!')", "hi there!", "hi!"),
    ],
)
def test_check_positive_and_negative(name, value, good, bad):
    """Every check passes the good output and fails the bad one, with a detail on failure."""
    ok = check(name, value, good)
    assert ok.passed and ok.name == name
    no = check(name, value, bad)
    assert not no.passed and no.detail


def test_is_json_schema_and_fence():
    """is-json with a schema names the failing path; a fenced block counts as JSON."""
    schema = {"schema": {"type": "object", "required": ["name"],
                         "properties": {"name": {"type": "string"}}}}
    assert check("is-json", schema, '```json\n{"name": "x"}\n```').passed
    res = check("is-json", schema, '{"name": 3}')
    assert not res.passed and "name" in res.detail
    assert not check("is-json", schema, "{}").passed


def test_rouge_l_against_reference_matches_rouge_score():
    """rouge-l uses rouge_score's F-measure against the case reference."""
    from rouge_score import rouge_scorer

    ref, out = "the cat sat on the mat", "the cat lay on a mat"
    expected = rouge_scorer.RougeScorer(["rougeL"]).score(ref, out)["rougeL"].fmeasure
    assert rouge_l(ref, out) == pytest.approx(expected)
    assert check("rouge-l", round(expected, 3) - 0.01, out, reference=ref).passed
    assert not check("rouge-l", 0.99, out, reference=ref).passed
    with pytest.raises(ValueError, match="reference"):
        CHECKS["rouge-l"].validate(0.5, False)


def test_judge_without_judge_is_not_a_pass():
    """No judge: the check reports 'needs a judge', never passes; with one, its verdict counts."""
    res = check("judge", "Is it polite?", "Thanks!")
    assert not res.passed and res.needs_judge and res.detail == NEEDS_JUDGE
    calls = []

    def judge(rubric, prompt, output, reference):
        calls.append((rubric, prompt, output))
        return "thank" in output.lower(), "polite"

    assert check("judge", "Is it polite?", "Thanks!", judge=judge).passed
    assert not check("judge", "Is it polite?", "Go away", judge=judge).passed
    assert calls[0] == ("Is it polite?", "q", "Thanks!")


@pytest.mark.parametrize(
    "expr",
    ["__import__('os')", "output.__class__", "open('/etc/passwd')", "().__class__.__bases__",
     "eval('1')", "json.codecs"],
)
def test_python_sandbox_blocks_accidents(expr):
    """Dunder access is refused at load; builtins beyond the whitelist are missing at run time."""
    try:
        arg = CHECKS["python"].validate(expr, False)
    except ValueError as exc:
        assert "_" in str(exc)
        return
    res = run_check("python", arg, "x", CheckContext())
    assert not res.passed and "raised" in res.detail


def test_python_check_sees_reference_and_helpers():
    """Expressions see output, reference, words, re and json helpers."""
    expr = "re.search(r'\\d+', output) and json.loads(reference)['n'] == int(words[-1])"
    assert check("python", expr, "count 42", reference='{"n": 42}').passed
    assert not check("python", expr, "count 41", reference='{"n": 42}').passed


@pytest.mark.parametrize(
    ("name", "value"),
    [("contains", ""), ("contains-any", []), ("regex", "("), ("max-words", 0),
     ("is-json", {"schema": {"type": "nope"}}), ("rouge-l", 1.5), ("python", "1 +"),
     ("equals", 3)],
)
def test_bad_check_values_are_refused(name, value):
    """Malformed check arguments fail at load with a message naming the problem."""
    with pytest.raises(ValueError):
        CHECKS[name].validate(value, True)
