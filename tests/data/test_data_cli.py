"""`tuneloop data check/split` end to end: exit codes 0/1/2, outputs, --json (R11, R12, R16)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from data_rows import alpaca

from tuneloop.cli import main

TUNELOOP = Path(sys.executable).parent / "tuneloop"


def test_check_writes_partition_and_exits_0(jsonl, tmp_path, capsys):
    """R12: with --out and --rejects every input row ends in exactly one of the two files."""
    path = jsonl([alpaca(1), "not json", alpaca(2), alpaca(1), "",
                  alpaca(3, output="SSN 123-45-6789")])
    out, rej = tmp_path / "clean.jsonl", tmp_path / "rej.jsonl"
    code = main(["data", "check", str(path), "--out", str(out), "--rejects", str(rej)])
    text = capsys.readouterr().out
    assert code == 0
    assert "rows read 5" in text and "malformed_json" in text and "exact_duplicate" in text
    assert f"{path}:2" in text  # an example row with its file:line
    clean = out.read_text().splitlines()
    rejected = [json.loads(x) for x in rej.read_text().splitlines()]
    assert len(clean) == 2 and [r["line"] for r in rejected] == [2, 4, 6]
    assert rejected[0]["raw"] == "not json"


def test_check_json_redact_and_against(jsonl, tmp_path, capsys):
    eval_q = "Explain topic number 2 in simple words for a beginner"
    evals = jsonl([{"prompt": eval_q, "completion": "x"},
                   {"prompt": "Unrelated question about the weather today", "completion": "y"}],
                  "eval.jsonl")
    path = jsonl([alpaca(1, input="call 555-123-4567"), alpaca(2)])
    code = main(["data", "check", str(path), "--json", "--redact-pii", "--against", str(evals),
                 "--ngram", "8"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["kept"] == 2 and data["pii"] == {"found": {"phone": 1},
                                                               "redacted": True}
    cont = data["contamination"]
    assert cont["n_contaminated"] == 1 and cont["items"][0]["train_rows"] == [f"{path}:2"]


def test_exit_1_when_nothing_usable_or_strict(jsonl, capsys):
    """R11: all rows rejected → exit 1 with the reason; --strict fails on any issue."""
    bad = jsonl(["{", alpaca(1, output="")], "bad.jsonl")
    assert main(["data", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "no usable rows remain" in err and "Traceback" not in err
    mixed = jsonl([alpaca(1), "{"], "mixed.jsonl")
    assert main(["data", "check", str(mixed)]) == 0
    assert main(["data", "check", str(mixed), "--strict"]) == 1
    assert "--strict: 1 of 2 rows" in capsys.readouterr().err


def test_exit_2_on_usage_errors(jsonl, capsys):
    path = jsonl([alpaca(1)])
    assert main(["data", "check", str(path), "--max-length", "64"]) == 2
    assert "--max-length needs --model" in capsys.readouterr().err
    assert main(["data", "check", "nope/missing.jsonl"]) == 2
    assert main(["data", "check", str(path), "--field-map", "broken"]) == 2
    assert main(["data", "check", str(path), "--format", "weird"]) == 2
    assert main(["data", "check"]) == 2


def test_check_with_model_reports_token_lengths(jsonl, tiny_model_dir, capsys):
    """R13: --model/--max-length count tokens under the model's template."""
    path = jsonl([alpaca(1), {"instruction": "Q", "output": "the sea is wide " * 40}])
    code = main(["data", "check", str(path), "--model", str(tiny_model_dir),
                 "--max-length", "100", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["rejected_by_reason"] == {"too_long": 1}
    assert data["token_lengths"]["max"] > 100


def test_check_with_run_dir_counts_under_its_training_template(jsonl, tiny_model_dir, tmp_path,
                                                               capsys):
    """A run trained with --template alpaca is measured in alpaca, not the tokenizer's ChatML."""
    import shutil

    from tuneloop.data.load import load_records
    from tuneloop.data.render import Renderer
    from tuneloop.models import load_tokenizer, save_model_metadata

    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "model")
    save_model_metadata(run / "model", base_model=str(tiny_model_dir), method="full",
                        template="alpaca", format="alpaca")
    path = jsonl([alpaca(1)])
    assert main(["data", "check", str(path), "--model", str(run), "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)["token_lengths"]["max"]
    record = load_records(path).records[0]
    tok = load_tokenizer(tiny_model_dir)
    lengths = {t: len(Renderer(tok, template=t).render(record).example.input_ids)
               for t in ("alpaca", "chat")}
    assert lengths["alpaca"] != lengths["chat"] and measured == lengths["alpaca"]


def test_split_subprocess(jsonl, tmp_path):
    """R16: the installed console script splits deterministically and writes the manifest."""
    path = jsonl([alpaca(i) for i in range(30)])
    out = tmp_path / "split"
    proc = subprocess.run([str(TUNELOOP), "data", "split", str(path), "--test-size", "0.2",
                           "--seed", "1", "--out-dir", str(out)],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "train 24 rows, test 6 rows" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"]["train"] == 24 and manifest["seed"] == 1
    assert len((out / "test.jsonl").read_text().splitlines()) == 6


@pytest.mark.integration
def test_check_with_embedded_model_tokenizer(capsys):
    """R13 on the real template: token lengths of the shipped chat examples under SmolLM2."""
    examples = Path(__file__).resolve().parents[2] / "examples" / "data" / "chat.jsonl"
    code = main(["data", "check", str(examples), "--model", "smollm2-135m-instruct",
                 "--max-length", "40", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["token_lengths"]["max"] > 40
    assert data["kept"] + data["rejected"] == 4
    assert data["prompt_truncated"] + data["rejected_by_reason"].get("too_long", 0) >= 1
