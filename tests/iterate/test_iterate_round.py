"""`tuneloop iterate` end to end: tiny model, a fake generator over real HTTP, real sqlite.

Round 1 is a suite run of the untrained tiny model (every case fails); round 2 targets those
failures with document-grounded rows, retrains, re-evaluates and is recorded with its parent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from fake_llm import FakeLLM, spec

from tuneloop.cli import main
from tuneloop.data.contamination import contamination_report
from tuneloop.eval.contamination import suite_items
from tuneloop.eval.suite import load_suite
from tuneloop.index import list_rounds

DOC = """# Harbour handbook

## Ferry

The ferry Gullwing leaves pier 4 at 07:10 every weekday morning for the outer islands.

## Radios

Channel 16 is reserved for distress calls only; routine traffic uses channel 9 on the harbour.

## Canteen

The canteen serves porridge with blackcurrant jam on Fridays and closes at noon in winter.
"""

# Two cases about the ferry and radio facts; the canteen section matches no case.
SUITE = {
    "name": "harbour",
    "threshold": 0.5,
    "max_new_tokens": 8,
    "cases": [
        {"id": "ferry-name", "prompt": "Which vessel departs from pier 4 early on weekdays?",
         "reference": "The Gullwing ferry departs from pier four at ten past seven every single "
                      "weekday morning bound for the outer islands of the harbour.",
         "tags": ["boats"], "checks": [{"icontains": "Gullwing"}]},
        {"id": "distress-channel", "prompt": "On what radio channel are distress calls made?",
         "reference": "Distress calls go out on channel 16.", "tags": ["radio"],
         "checks": [{"icontains": "channel 16"}]},
    ],
}


def responder(kind: str, text: str, n: int) -> str:
    """Q/A about the chunk's first sentence; plus a copy of a suite question (ROUGE-L rejects it)
    and an answer quoting the suite's long reference (the 13-gram scan drops it)."""
    if kind == "qa":
        chunk = text.split('"""')[1].strip()
        heading = re.search(r"## (\w+)", chunk)
        topic = heading.group(1) if heading else "harbour"
        fact = next(line for line in chunk.splitlines() if line and not line.startswith("#"))
        pairs = [(f"What does the harbour handbook say about the {topic.lower()}?", fact),
                 ("Which vessel departs from pier 4 early on weekdays?", "The Gullwing.")]
        if topic == "Ferry":
            pairs.append(("Tell me about the morning ferry schedule in full detail.",
                          SUITE["cases"][0]["reference"]))
        return "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in pairs)
    if kind in ("judge_faithful", "judge_standalone"):
        return "Fine. [[YES]]"
    return ""


def write_seed_config(tmp_path, model_dir, data, answer) -> Path:
    """12 greeting rows (answers by `answer(i)`) and a 2-step full fine-tuning config on them."""
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"Say hello number {i}."},
        {"role": "assistant", "content": answer(i)}]}) + "\n" for i in range(12)),
        encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "name": "harbour", "model": str(model_dir), "method": "full",
        "data": {"train": [str(data)], "max_length": 64},
        "training": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "seed": 1},
        "logging": {"interval": 1, "report_to": [], "progress": False}}), encoding="utf-8")
    return config


@pytest.fixture()
def harbour(tmp_path, tiny_model_dir, monkeypatch):
    """Docs, suite, seed data, config for the tiny model, and a round-1 result."""
    from tuneloop.eval.suite_run import run_suite

    monkeypatch.setenv("TUNELOOP_HOME", str(tmp_path / "home"))
    doc = tmp_path / "handbook.md"
    doc.write_text(DOC, encoding="utf-8")
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(SUITE), encoding="utf-8")
    data = tmp_path / "train.jsonl"
    config = write_seed_config(tmp_path, tiny_model_dir, data, lambda i: f"Hello {i}.")
    result, variant_dir = run_suite(str(suite), str(tiny_model_dir), out_dir=tmp_path / "r1",
                                    variant="round-1")
    assert result.pass_rate == 0.0  # the untrained tiny model fails every case
    return {"doc": doc, "suite": suite, "config": config, "data": data, "r1": variant_dir,
            "tmp": tmp_path}


def test_round_two_targets_failures_stays_clean_and_records_its_parent(harbour, capsys):
    """R16: the failing cases' facts are targeted (the unrelated section never is), no new row
    shares a 13-gram with the suite (a planted quote is dropped and counted), and round 2 is in
    the index with round 1 as its parent; the report shows both rounds."""
    loop = harbour["tmp"] / "loop"
    fake = FakeLLM(responder)
    with fake.serve() as url:
        rc = main(["iterate", str(harbour["r1"]), "--suite", str(harbour["suite"]),
                   "--config", str(harbour["config"]), "--docs", str(harbour["doc"]),
                   "--generator", spec(url), "--out", str(loop), "--no-progress",
                   "--chunk-words", "20"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "round 2 vs round 1: no change" in out.out and "report:" in out.out
    assert "exact McNemar p = 1.000" in out.out and "95 % Wilson" in out.out

    # targeted: the chunks sent hold the failing cases' facts, never the canteen section
    qa = [text for kind, text in fake.log if kind == "qa"]
    sent = "\n".join(qa)
    assert "Gullwing" in sent and "Channel 16" in sent
    assert "porridge" not in sent
    assert all("Focus on: facts about" in t for t in qa)
    targets = json.loads((loop / "round-002" / "targets.json").read_text())
    assert sorted(f["id"] for g in targets["groups"] for f in g["cases"]) == [
        "distress-channel", "ferry-name"]
    assert len(targets["groups"]) == 2  # different tags/checks: two groups
    # each failing case got its own chunk: the one stating its fact
    assert "Gullwing" in targets["case_chunks"]["ferry-name"]["text"]
    assert "Channel 16" in targets["case_chunks"]["distress-channel"]["text"]
    # the failed checks' values (from the suite) are what located the facts
    assert sorted(v for g in targets["groups"] for f in g["cases"] for v in f["values"]) == [
        "Gullwing", "channel 16"]

    # clean: the suite question copy was rejected, the quoted reference dropped by the scan
    rejects = [json.loads(x) for f in sorted((loop / "round-002" / "synth").glob("*/rejects.jsonl"))
               for x in f.read_text().splitlines()]
    assert any(r["reason"] == "too_similar_to_avoided" for r in rejects)
    version = json.loads((loop / "round-002" / "data" / "version.json").read_text())
    assert version["dropped_contaminated"] == 1 and version["new_rows"] >= 2
    new = [json.loads(x) for x in (loop / "round-002" / "data" / "new_rows.jsonl")
           .read_text().splitlines()]
    assert len(new) == version["new_rows"]
    # every row says which round wrote it, which failed case it targets and its source chunk
    assert all(r["meta"]["round"] == 2 and len(r["meta"]["targets"]) == 1
               and r["meta"]["chunk"].startswith(str(harbour["doc"])) for r in new)
    items = suite_items(load_suite(harbour["suite"]), "suite")
    texts = ["\n".join(m["content"] for m in r["messages"]) for r in new]
    assert contamination_report(texts, items, n=13).n_contaminated == 0
    assert version["files"][0]["path"] == str(harbour["data"])

    # recorded: round 1 (the given result) and round 2 pointing at it
    rounds = list_rounds(loop)
    assert [r["round"] for r in rounds] == [1, 2]
    assert rounds[1]["parent_id"] == rounds[0]["id"] and rounds[0]["parent_id"] is None
    assert Path(rounds[0]["eval_path"]) == (harbour["r1"] / "cases.jsonl").resolve()
    assert Path(rounds[1]["run_dir"]).is_dir()
    assert rounds[1]["extra"]["targeted"] == ["ferry-name", "distress-channel"]
    # the retrained run saw the new rows
    fp = json.loads((Path(rounds[1]["run_dir"]) / "data" / "fingerprint.json").read_text())
    assert "new_rows.jsonl" in json.dumps(fp)
    html = (loop / "report.html").read_text(encoding="utf-8")
    assert 'id="rounds"' in html and "Round 2" in html

    assert rounds[1]["verdict"] == "no change" and rounds[1]["n_fixed"] == 0
    assert rounds[1]["p_value"] == 1.0

    # a result from elsewhere is refused: it is not a round of this loop
    other = harbour["tmp"] / "other-result.jsonl"
    other.write_bytes((harbour["r1"] / "cases.jsonl").read_bytes())
    assert main(["iterate", str(other), "--suite", str(harbour["suite"]),
                 "--config", str(harbour["config"]), "--docs", str(harbour["doc"]),
                 "--generator", "extractive", "--out", str(loop), "--no-progress"]) == 2
    assert "not a round of this loop" in capsys.readouterr().err


def test_iterate_without_documents_or_seeds_is_a_usage_error(harbour, capsys):
    """Bad input is one clean message and exit 2, no traceback."""
    rc = main(["iterate", str(harbour["r1"]), "--suite", str(harbour["suite"]),
               "--config", str(harbour["config"]), "--generator", "openai:http://127.0.0.1:9/v1#x",
               "--out", str(harbour["tmp"] / "loop")])
    err = capsys.readouterr().err
    assert rc == 2 and "--docs" in err and "Traceback" not in err
