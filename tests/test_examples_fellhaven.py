"""examples/fellhaven: every file loads with tuneloop's loaders, the rows are clean, the suite is held out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tuneloop.data.check import check_files
from tuneloop.eval.suite import load_suite
from tuneloop.train import load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fellhaven"
DOCUMENTS = ("handbook.md", "radio_procedures.md", "committee_notes.md")
PREFIX, SIGN_OFF = "Ranger note:", "— Fellhaven Rangers"
STYLE_CHECKS = {"starts-with", "contains"}


def grams(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Word n-grams of lower-cased \\w+ tokens (the rule the suite's questions are written to)."""
    ws = re.findall(r"\w+", text.lower())
    return {tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)}


@pytest.fixture(scope="module")
def suite():
    return load_suite(EXAMPLE / "suite.yaml")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    lines = (EXAMPLE / "train.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


def fact_check(case):
    """The case's one check that is about the fact, not the style."""
    (check,) = [c for c in case.checks if c.name not in STYLE_CHECKS]
    return check


def test_suite_loads_with_one_fact_check_and_both_style_checks_per_case(suite):
    """33 cases, unique ids; each checks its fact and the house style."""
    assert len(suite.cases) == 33
    assert len({c.id for c in suite.cases}) == len(suite.cases)
    for case in suite.cases:
        assert fact_check(case).name in {"icontains", "regex"}, case.id
        values = {c.name: c.value for c in case.checks if c.name in STYLE_CHECKS}
        assert values == {"starts-with": PREFIX, "contains": "Fellhaven Rangers"}, case.id


def test_reference_answers_pass_and_a_styleless_answer_fails(suite):
    """The checks are satisfiable by the reference, and the style checks can fail."""
    from tuneloop.eval.suite_run import score_case

    for case in suite.cases:
        passed, results = score_case(case, case.reference, None)
        assert passed, (case.id, [r.name for r in results if not r.passed])
        bare = case.reference.removeprefix(PREFIX).removesuffix(SIGN_OFF).strip()
        assert not score_case(case, bare, None)[0], case.id


def test_config_loads_and_finds_train_jsonl_from_any_directory(tmp_path, monkeypatch):
    """lora.yaml validates; data.train resolves next to the config, not the working directory."""
    monkeypatch.chdir(tmp_path)
    config = load_config(EXAMPLE / "lora.yaml")
    assert (config.method, config.model) == ("lora", "smollm2-135m-instruct")
    assert (config.lora.r, config.lora.alpha, config.lora.target_modules) == (16, 32, "all-linear")
    assert [Path(p) for p in config.data.train] == [EXAMPLE / "train.jsonl"]


def test_every_training_row_passes_data_check(rows):
    """`data check` (roles, duplicates, near-duplicates, PII) rejects none of the rows."""
    report = check_files([EXAMPLE / "train.jsonl"])
    assert report.rows_read == len(rows) == 198
    assert report.rejected == [], [r.issues for r in report.rejected[:3]]
    assert len(report.kept) == len(rows)


def test_training_answers_follow_the_house_style(rows):
    """Every answer starts with the prefix and ends with the sign-off; questions are distinct."""
    questions = [r["messages"][0]["content"] for r in rows]
    assert len(set(questions)) == len(questions)
    for row in rows:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        answer = row["messages"][1]["content"]
        assert answer.startswith(PREFIX + " ") and answer.endswith(" " + SIGN_OFF), answer


def test_documents_state_every_checked_value(suite):
    """Each case's fact is written in one of the documents (so iterate can find its chunk)."""
    docs = "\n".join((EXAMPLE / name).read_text("utf-8") for name in DOCUMENTS)
    for case in suite.cases:
        check = fact_check(case)
        if check.name == "regex":
            assert re.search(check.value, docs), case.id
        else:
            assert check.value.lower() in docs.lower(), case.id


def test_no_suite_prompt_shares_a_5_gram_with_a_training_question(suite, rows):
    """The suite asks in other words: no 5-word sequence of a prompt is in a training question."""
    seen = set().union(*(grams(r["messages"][0]["content"]) for r in rows))
    shared = {c.id: grams(c.user_prompt) & seen for c in suite.cases}
    assert {k: v for k, v in shared.items() if v} == {}
    # the rule does catch a copied question, so the empty result above means something
    assert grams(rows[0]["messages"][0]["content"]) & seen


def test_contamination_scan_finds_no_13_gram_with_the_suite(suite, rows):
    """The scan `data check --against` and `iterate` run (prompt + reference) finds nothing."""
    from tuneloop.data.contamination import contamination_report
    from tuneloop.data.records import Record
    from tuneloop.eval.contamination import suite_items

    records = [Record(messages=r["messages"]) for r in rows]
    report = contamination_report(records, suite_items(suite, "fellhaven"))
    assert report.n_items == 33
    assert report.n_contaminated == 0, [i.where for i in report.items]
