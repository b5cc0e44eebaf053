"""`tuneloop synth self-instruct` against a scripted fake OpenAI-compatible server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_llm import FakeLLM, spec

from tuneloop.cli import main
from tuneloop.synth.self_instruct import SelfInstructOptions, run_self_instruct

SEEDS = [
    {"instruction": "Give three tips for staying healthy.",
     "instances": [{"input": "", "output": "Eat well, sleep, move."}], "is_classification": False},
    {"instruction": "Is the following number even or odd?",
     "instances": [{"input": "7", "output": "odd"}], "is_classification": True},
    {"instruction": "Translate the sentence into German.",
     "instances": [{"input": "Good morning", "output": "Guten Morgen"}]},
    {"instruction": "Suggest a name for a bakery.", "input": "", "output": "Crumb & Co."},
    {"instruction": "Explain photosynthesis to a ten year old.", "input": "",
     "output": "Plants make food from light."},
    {"instruction": "Sort these words alphabetically.", "input": "pear, apple",
     "output": "apple, pear"},
    {"instruction": "Rewrite the sentence in the passive voice.", "input": "Tom wrote it.",
     "output": "It was written by Tom."},
]

ROUND1 = (" Write a limerick about a lazy cat on a sunday.\n"
          "10. Draw a picture of a sunset over the hills.\n"
          "11. Hi there.\n"
          "12. Write a program that prints the first ten primes.\n"
          '13. "Quote" a famous line from a play you like.\n'
          "14. Élan: describe the feeling of winning a race.\n"
          "15. Write a limerick about a lazy cat on a sunday!\n"
          "16. Classify the sentiment of this movie review as positive or negative.\n"
          "17. Describe " + "very " * 150 + "small things.\n"
          "18. Explain why the ocean looks blue to people standing on")
ROUND2 = ("Translate the word hello into Spanish for a beginner.\n"
          "10. Name a primary colour that appears in the rainbow.\n"
          "11. List three benefits of regular exercise for adults.\n")

INSTANCES = {
    "limerick": "Example 1\nInput: <noinput>\nOutput: A cat on a mat sat flat.\n\n"
                "Example 2\nInput: <noinput>\nOutput: A cat on a mat sat flat.",
    "sentiment": "Example 1\nClass label: positive\nInput: I loved every minute.\n\n"
                 "Example 2\nClass label: negative\nInput: A dull, slow film.\n\n"
                 "Example 3\nClass label: negative\nInput: negative",
    "hello": "Example 1\nInput: hello\nOutput: hola\n\nExample 2\nInput: hello\nOutput: buenas",
    "colour": "Example 1\nInput: <noinput>\nOutput: ",
    "exercise": "Example 1\nInput: <noinput>\nOutput: Better sleep, mood and heart health.",
}


def scripted(kind: str, text: str, n: int) -> str:
    """Instruction lists in order; classification and instances by the task's content."""
    if kind == "instructions":
        return [ROUND1, ROUND2][n] if n < 2 else "Write a limerick about a lazy cat on a sunday."
    if kind == "classify":
        return "Yes" if "Classify" in text else "No"
    for key, answer in INSTANCES.items():
        if key in text:
            return answer
    return ""


@pytest.fixture
def seeds(tmp_path) -> Path:
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_filter_counted_and_classification_output_first(seeds, tmp_path):
    """Every filter drops exactly its scripted candidate; classification tasks go label-first."""
    fake = FakeLLM(scripted)
    out = tmp_path / "run"
    with fake.serve() as url:
        stats = run_self_instruct(seeds, spec(url), out, SelfInstructOptions(
            target=3, instances=2, batch=1, max_tokens=60, progress=False))
    assert stats["stopped"] == "target"
    assert stats["rejected"] == {
        "blacklisted_word": 1, "too_short": 1, "write_a_program": 1,
        "starts_with_punctuation": 1, "starts_non_ascii": 1, "too_similar": 1, "too_long": 1,
        "cut_off_last_item": 1, "conflicting_outputs": 1, "no_valid_instance": 1}
    assert stats["dropped_instances"] == {"repeated_instance": 1, "input_equals_output": 1,
                                          "empty_output": 1}
    assert stats["accepted"] == 3 and stats["classification_tasks"] == 1
    assert stats["rows"] == {"human": 7, "machine": 4, "total": 11}
    assert stats["requests"]["total"] == 2 + 5 + 5  # 2 lists, 5 classify, 5 instances
    assert fake.kinds["instances_output_first"] == 1 and fake.kinds["instances_input_first"] == 4

    rows = _rows(out / "train.jsonl")
    human = [r for r in rows if r["meta"]["source"] == "human"]
    machine = [r for r in rows if r["meta"]["source"] == "machine"]
    assert len(human) == 7 and human[0]["meta"]["seed"].endswith("seeds.jsonl:1")
    sentiment = [r for r in machine if r["meta"]["is_classification"]]
    assert [r["messages"][1]["content"] for r in sentiment] == ["positive", "negative"]
    assert sentiment[0]["messages"][0]["content"].endswith("\n\nI loved every minute.")
    for r in machine:
        m = r["meta"]
        assert m["generator"].startswith("openai:") and m["request_id"].startswith("req-")
        assert 0 <= m["nearest"]["rouge_l"] <= 0.7 and m["nearest"]["task"]
    rejects = _rows(out / "rejects.jsonl")
    similar = next(r for r in rejects if r["reason"] == "too_similar")
    assert similar["nearest"] == {"task": "Write a limerick about a lazy cat on a sunday.",
                                  "rouge_l": 1.0}
    assert {r["reason"] for r in rejects} >= {"conflicting_outputs", "blacklisted_word"}

    # Round 1 showed the 6 seed examples only; round 2 added 2 machine tasks (numbered 1..8).
    prompts = [t for k, t in fake.log if k == "instructions"]
    assert "\n6. " in prompts[0] and "\n7. " not in prompts[0] and prompts[0].endswith("7.")
    assert "\n8. " in prompts[1] and prompts[1].endswith("9.")
    assert "Write a limerick about a lazy cat on a sunday." in prompts[1]
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["prompts"]) == {"instructions", "classify", "instances_input_first",
                                        "instances_output_first"}
    assert manifest["generator"] == f"openai:{url}/v1#fake"


def test_rerun_sends_nothing_and_budget_stops(seeds, tmp_path):
    """A finished run rerun is answered from its cache; --max-requests bounds a new run."""
    fake = FakeLLM(scripted)
    out = tmp_path / "run"
    opts = SelfInstructOptions(target=3, instances=2, batch=1, max_tokens=60, progress=False)
    with fake.serve() as url:
        first = run_self_instruct(seeds, spec(url), out, opts)
        sent = fake.total
        again = run_self_instruct(seeds, spec(url), out, opts)
        assert fake.total == sent  # nothing sent twice
        assert again["rows"] == first["rows"] and again["resumed"] is True
        assert len(_rows(out / "train.jsonl")) == first["rows"]["total"]
        fake.reset()
        budget = run_self_instruct(seeds, spec(url), tmp_path / "b", SelfInstructOptions(
            target=3, instances=2, batch=1, max_tokens=60, max_requests=3, progress=False))
    assert budget["stopped"] == "budget" and budget["requests"]["total"] <= 3
    assert fake.total <= 3


def test_changed_options_refuse_to_resume(seeds, tmp_path, capsys):
    """Rerunning into the same --out with other settings is refused with a clear message."""
    fake = FakeLLM(scripted)
    out = tmp_path / "run"
    with fake.serve() as url:
        args = ["synth", "self-instruct", "--seeds", str(seeds), "--generator", spec(url),
                "--out", str(out), "--target", "3", "--batch", "1", "--max-tokens", "60",
                "--no-progress"]
        assert main(args) == 0
        assert main(args[:-1] + ["--instances", "3", "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "holds a different synth run" in err and "params" in err


def test_bad_seed_file_names_line(tmp_path, capsys):
    """R10: a seed row without an output fails naming file:line and the field, no traceback."""
    bad = tmp_path / "seeds.jsonl"
    bad.write_text(json.dumps(SEEDS[0]) + "\n" + json.dumps({"instruction": "x"}) + "\n")
    rc = main(["synth", "self-instruct", "--seeds", str(bad), "--generator",
               "openai:http://127.0.0.1:9/v1#x", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc != 0 and "seeds.jsonl:2" in err and "output" in err and "Traceback" not in err
