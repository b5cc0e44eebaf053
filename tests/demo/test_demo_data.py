"""The shipped demo data: reproducible, loadable by every loader, clean, and uncontaminated."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from tuneloop.demo import DEMO_FILES, STYLE_CHECKS, demo_resource

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generator():
    """scripts/make_demo_data.py imported as a module."""
    path = ROOT / "scripts" / "make_demo_data.py"
    spec = importlib.util.spec_from_file_location("make_demo_data", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_demo_data"] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_rows() -> list[dict]:
    return [json.loads(line) for line in demo_resource("train.jsonl").read_text("utf-8").splitlines()]


@pytest.fixture(scope="module")
def suite():
    from tuneloop.eval.suite import load_suite

    return load_suite(demo_resource("suite.yaml"))


def test_generator_reproduces_shipped_files_byte_for_byte(generator):
    """The shipped files are exactly the generator's output (no hand edits drift in)."""
    built = generator.build()
    assert sorted(built) == sorted(DEMO_FILES)
    for name, text in built.items():
        assert demo_resource(name).read_bytes() == text.encode("utf-8"), name
    assert generator.main(["--check"]) == 0


def test_generator_check_mode_notices_a_changed_file(generator, tmp_path):
    """--check fails when a shipped file differs from what the generator writes."""
    assert generator.main(["--out", str(tmp_path)]) == 0
    assert generator.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "suite.yaml").write_text("name: edited\n", encoding="utf-8")
    assert generator.main(["--out", str(tmp_path), "--check"]) == 1


def test_train_jsonl_passes_data_check_with_no_rejects():
    """R11/R12: every one of the ≥300 training rows survives `data check` (dups, PII, roles)."""
    from tuneloop.data.check import check_files

    report = check_files([demo_resource("train.jsonl")])
    assert report.rows_read >= 300
    assert len(report.kept) == report.rows_read
    assert report.rejected == [], [r.issues for r in report.rejected[:3]]


def test_training_rows_follow_the_house_style(train_rows):
    """Every answer starts with "Answer:" and ends with the sign-off; questions are distinct."""
    questions = [r["messages"][0]["content"] for r in train_rows]
    assert len(set(questions)) == len(questions)
    for row in train_rows:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        answer = row["messages"][1]["content"]
        assert answer.startswith("Answer: ") and answer.endswith(" — Tide Desk"), answer


def test_suite_loads_and_each_case_checks_a_fact_and_the_style(suite):
    """The held-out suite loads with the suite loader; fact + style checks on every case."""
    assert 30 <= len(suite.cases) <= 50
    assert len({c.id for c in suite.cases}) == len(suite.cases)
    for case in suite.cases:
        names = [c.name for c in case.checks]
        assert any(n not in STYLE_CHECKS for n in names), case.id
        assert {"starts-with", "contains"} <= set(names), case.id


def test_every_reference_answer_passes_its_own_checks(suite):
    """The checks are satisfiable: the reference answer passes all of them."""
    from tuneloop.eval.suite_run import score_case

    for case in suite.cases:
        passed, results = score_case(case, case.reference, None)
        assert passed, (case.id, [(r.name, r.detail) for r in results if not r.passed])


def test_a_styleless_or_wrong_answer_fails(suite):
    """The checks can fail: the right fact without the style fails, and so does a wrong fact."""
    from tuneloop.eval.suite_run import score_case

    case = suite.cases[0]
    bare = case.reference.removeprefix("Answer: ").removesuffix(" — Tide Desk")
    assert not score_case(case, bare, None)[0]
    assert not score_case(case, "Answer: I do not know. — Tide Desk", None)[0]


def test_system_prompt_holds_the_style_rule_and_every_fact(suite):
    """The base+prompt baseline is fair: its prompt states the style and every checked fact."""
    from tuneloop.eval.suite_run import score_case

    prompt = demo_resource("system_prompt.txt").read_text("utf-8")
    assert '"Answer:"' in prompt and "— Tide Desk" in prompt
    fact_lines = [line[2:] for line in prompt.splitlines() if line.startswith("- ")]
    assert len(fact_lines) == len(suite.cases)
    for case, line in zip(suite.cases, fact_lines):
        # the fact line, wrapped in the style, passes the case: the prompt holds the answer
        assert score_case(case, f"Answer: {line} — Tide Desk", None)[0], case.id


def test_no_suite_question_overlaps_the_training_rows(suite, train_rows):
    """R16: the contamination scan finds no 13-gram (nor even 5-gram) overlap with training."""
    from tuneloop.data.contamination import contamination_report
    from tuneloop.data.records import Record

    records = [Record(messages=r["messages"]) for r in train_rows]
    prompts = [c.user_prompt for c in suite.cases]
    assert contamination_report(records, prompts).n_contaminated == 0
    assert contamination_report(records, prompts, n=5).n_contaminated == 0
    # and the scan does see a planted copy, so the zero above means something
    planted = [train_rows[0]["messages"][0]["content"] + " " + train_rows[0]["messages"][1]["content"]]
    assert contamination_report(records, planted, n=5).n_contaminated == 1


def test_documents_state_every_fact(suite):
    """Each checked value appears in the handbook, FAQ or meeting notes."""
    docs = " ".join(demo_resource(n).read_text("utf-8") for n in
                    ("handbook.md", "faq.md", "meeting_notes.md"))
    for case in suite.cases:
        check = next(c for c in case.checks if c.name not in STYLE_CHECKS)
        if check.name == "regex":
            assert re.search(check.value, docs), case.id
        else:
            assert str(check.value).lower() in docs.lower(), case.id


def test_demo_config_loads_with_the_config_loader():
    """demo.yaml is a valid training config (strict loader: unknown keys would fail)."""
    from tuneloop.train.config import load_config

    config = load_config(demo_resource("demo.yaml"))
    assert config.method == "lora"
    assert config.model == "smollm2-135m-instruct"
    assert config.data.max_length >= 64
