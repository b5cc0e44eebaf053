"""Contamination scan: planted n-gram overlaps are found, disjoint data reports none (R16)."""

from __future__ import annotations

import random

from tuneloop.data.contamination import contamination_report, words
from tuneloop.data.records import Record

VOCAB = [f"tok{i}" for i in range(4000)]


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def test_planted_overlaps_found_and_located():
    rng = random.Random(0)
    evals = [text(rng, 40) for _ in range(20)]
    train = [Record.chat(("user", text(rng, 30)), ("assistant", text(rng, 30)),
                         source="train.jsonl", line=i + 1) for i in range(200)]
    # plant: a 13-word window of eval 4 (with punctuation/case changes) in train row 50,
    # and the whole of eval 11 in train row 120
    window = evals[4].split()[10:23]
    train[49].messages[1]["content"] += " " + ", ".join(w.upper() for w in window) + "!"
    train[119].messages[0]["content"] = "Q: " + evals[11]
    rep = contamination_report(train, evals, n=13)
    assert [(i.index, i.train_rows) for i in rep.items] == [
        (4, ["train.jsonl:50"]), (11, ["train.jsonl:120"])]
    assert rep.items[0].n_matched == 1 and rep.items[1].share == 1.0
    assert rep.n_contaminated == 2 and rep.share_contaminated == 0.1
    assert rep.to_json()["items"][1]["n_grams"] == 40 - 13 + 1


def test_no_false_overlap_on_disjoint_data():
    rng = random.Random(1)
    half = len(VOCAB) // 2
    evals = [" ".join(rng.choice(VOCAB[:half]) for _ in range(30)) for _ in range(30)]
    train = [" ".join(rng.choice(VOCAB[half:]) for _ in range(60)) for _ in range(300)]
    # shared common words alone must not count: 12 shared words < one 13-gram
    train.append(" ".join(evals[0].split()[:12]) + " " + text(rng, 20))
    rep = contamination_report(train, evals, n=13)
    assert rep.items == [] and rep.n_contaminated == 0 and rep.n_train == 301


def test_short_eval_items_matched_whole():
    rep = contamination_report(["the answer to what is the capital of france is paris"],
                               ["What is the capital of France?", "Name a red fruit."], n=13)
    assert [i.index for i in rep.items] == [0] and rep.short_items == 2
    assert words("Don't STOP-now!") == ["don", "t", "stop", "now"]


def test_against_a_suite_yaml_names_the_case(tmp_path):
    """R16: `data check TRAIN --against SUITE.yaml` scans each case's prompt and reference."""
    from tuneloop.data.check import CheckOptions, check_files
    from tuneloop.eval.contamination import load_eval_items

    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\ncases:\n"
                     "  - id: capital\n    prompt: What is the capital of France?\n"
                     "    reference: Paris is the capital and largest city of France.\n"
                     "    checks:\n      - icontains: paris\n"
                     "  - id: other\n    prompt: Name a colour of the rainbow please.\n"
                     "    checks:\n      - max-words: 5\n")
    train = tmp_path / "train.jsonl"
    train.write_text('{"instruction": "Tell me", "output": "Paris is the capital and largest '
                     'city of France."}\n{"instruction": "Hi", "output": "Hello there"}\n')
    # the eval side turns the suite into texts; the data side scans them
    report = check_files(train, options=CheckOptions(against=load_eval_items([suite]),
                                                     ngram=8))
    cont = report.contamination
    assert cont.n_items == 2
    assert [(i.where, i.train_rows) for i in cont.items] == [(f"{suite}#capital",
                                                              [f"{train}:1"])]
