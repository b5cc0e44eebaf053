"""Running suites on the tiny model: scores, needs-judge accounting, files and the index row."""

from __future__ import annotations

import json

import pytest

from tuneloop.eval.suite import suite_from_dict
from tuneloop.eval.suite_run import run_suite, run_suite_on_model

SUITE = {
    "name": "tiny-suite",
    "threshold": 0.5,
    "max_new_tokens": 8,
    "cases": [
        {"id": "always", "prompt": "What is the capital of France?", "tags": ["a"],
         "checks": [{"max-words": 1000}, {"python": "isinstance(output, str)"}]},
        {"id": "never", "prompt": "List three colours.", "weight": 3, "tags": ["a", "b"],
         "checks": [{"contains": "\u2603 impossible \u2603"}]},
        {"id": "judged", "prompt": "Write a short poem about the sea.", "max_new_tokens": 4,
         "checks": [{"judge": "Is it a poem?"}]},
        {"id": "sys", "system": "You are a helpful assistant.",
         "prompt": "Translate: good morning.",
         "checks": [{"not-contains": "\u2603"}]},
    ],
}


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from tuneloop.data.render import Renderer
    from tuneloop.models import load_model

    model, tokenizer = load_model(str(tiny_model_dir))
    return model, tokenizer, Renderer(tokenizer)


def test_run_suite_on_model_scores(loaded):
    """Weighted score, pass rate, needs-judge count and threshold follow the case results."""
    suite = suite_from_dict(SUITE)
    result = run_suite_on_model(*loaded, suite, batch_size=2)
    by_id = {c.id: c for c in result.cases}
    assert [c.id for c in result.cases] == ["always", "never", "judged", "sys"]
    assert by_id["always"].passed and by_id["sys"].passed
    assert not by_id["never"].passed
    judged = by_id["judged"]
    assert not judged.passed and judged.needs_judge and judged.checks[0].detail == "needs a judge"
    assert result.needs_judge == 1
    assert result.pass_rate == pytest.approx(2 / 4)
    assert result.score == pytest.approx(2 / 6)  # "never" weighs 3
    assert not result.passed  # 0.33 < 0.5
    assert result.by_tag() == {"a": 0.5, "b": 0.0}
    assert judged.n_tokens <= 4 and by_id["always"].n_tokens <= 8
    assert by_id["sys"].prompt[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert all(c.n_words == len(c.output.split()) for c in result.cases)


def test_suite_gated_call_restores_train_mode(loaded):
    """Mid-training (suite-gated saves) every forward runs in eval mode (no dropout), and the
    model is handed back in train mode."""
    model, tokenizer, renderer = loaded
    modes: list[bool] = []
    hook = model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    model.train()
    try:
        run_suite_on_model(model, tokenizer, renderer, suite_from_dict(SUITE))
        assert model.training
    finally:
        hook.remove()
        model.eval()
    assert modes and not any(modes)


def test_judge_callable_grades_the_judge_check(loaded):
    """With a judge, the judge check is graded (and no longer counted as needing one)."""
    seen = []

    def judge(rubric, prompt, output, reference):
        seen.append(prompt)
        return True, "fine"

    result = run_suite_on_model(*loaded, suite_from_dict(SUITE), judge=judge)
    judged = next(c for c in result.cases if c.id == "judged")
    assert judged.passed and not judged.needs_judge and result.needs_judge == 0
    assert seen == ["Write a short poem about the sea."]


def test_batched_equals_one_at_a_time(loaded):
    """Greedy outputs do not depend on the batch size (what the eval benchmark relies on)."""
    suite = suite_from_dict(SUITE)
    one = run_suite_on_model(*loaded, suite, batch_size=1)
    many = run_suite_on_model(*loaded, suite, batch_size=4)
    assert [c.output for c in one.cases] == [c.output for c in many.cases]


def test_run_suite_writes_files_and_index(tiny_model_dir, tmp_path, monkeypatch):
    """run_suite writes OUT/<variant>/cases.jsonl + summary.json and one index row; no overwrite."""
    from tuneloop.errors import EvalError
    from tuneloop.index import list_evals

    monkeypatch.setenv("TUNELOOP_HOME", str(tmp_path / "home"))
    suite = suite_from_dict(SUITE, source="mem.yaml")
    out = tmp_path / "out"
    result, vdir = run_suite(suite, str(tiny_model_dir), out_dir=out, variant="base+prompt",
                             system_prompt="Be brief.")
    assert vdir == out / "base+prompt"
    rows = [json.loads(line) for line in (vdir / "cases.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["always", "never", "judged", "sys"]
    assert rows[0]["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert rows[3]["prompt"][0]["content"] == "You are a helpful assistant."  # case's own wins
    assert {"name", "passed", "detail", "needs_judge"} <= set(rows[1]["checks"][0])
    summary = json.loads((vdir / "summary.json").read_text())
    assert summary["pass_rate"] == result.pass_rate and summary["n"] == 4
    assert summary["needs_judge"] == 1 and summary["passed"] is False
    evals = list_evals()
    assert len(evals) == 1
    row = evals[0]
    assert row["kind"] == "suite" and row["name"] == "tiny-suite"
    assert row["variant"] == "base+prompt" and row["score"] == pytest.approx(0.5)
    with pytest.raises(EvalError, match="already exist"):
        run_suite(suite, str(tiny_model_dir), out_dir=out, variant="base+prompt")


class ScriptedJudge:
    """A Generator (backends protocol) that answers like a judge model would."""

    name = "scripted-judge"

    def __init__(self):
        self.prompts = []

    def generate(self, prompts, params):
        self.prompts.extend(prompts)
        text = prompts[0][-1]["content"]
        if "Thank you" in text:
            return ["The reply is polite. [[PASS]] Rating: [[9]]"]
        if "Go away" in text:
            return ["Rude. [[FAIL]] Rating: [[2]]"]
        return ["I cannot decide."]


def test_judge_check_wired_to_eval_judge():
    """A Generator as judge goes through eval.judge's rubric prompt; an unparseable verdict is a
    fail that says so, never a pass (R18)."""
    from tuneloop.eval.suite_run import make_judge, score_case

    suite = suite_from_dict({"name": "j", "cases": [
        {"id": "c", "prompt": "Reply to a customer.", "checks": [{"judge": "Is it polite?"}]}]})
    judge = ScriptedJudge()
    fn = make_judge(judge)
    case = suite.cases[0]
    passed, checks = score_case(case, "Thank you for writing!", fn)
    assert passed and "PASS" in checks[0].detail
    assert "Is it polite?" in judge.prompts[0][-1]["content"]
    passed, checks = score_case(case, "Go away", fn)
    assert not passed and "FAIL" in checks[0].detail
    passed, checks = score_case(case, "Hmm", fn)
    assert not passed and "unparseable" in checks[0].detail and not checks[0].needs_judge
