"""`tuneloop train` CLI: clean errors and exit codes (unit), and the embedded model end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuneloop.cli import main


def test_unknown_key_is_a_clean_usage_error(make_config, capsys):
    """A typo in --set exits 2 with the key and a suggestion, no traceback."""
    cfg = make_config()
    assert main(["train", str(cfg), "--set", "training.lerning_rate=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'training.lerning_rate'" in err and "did you mean 'learning_rate'" in err
    assert "Traceback" not in err


def test_resume_needs_a_run_dir_and_runs_are_never_overwritten(make_config, tmp_path, capsys):
    """--resume without --output-dir, and a second run into an existing run dir, exit 2."""
    cfg = make_config(training={"max_steps": 1, "batch_size": 8}, data={"eval_fraction": 0.0},
                      save={"interval": 5})
    assert main(["train", str(cfg), "--resume"]) == 2
    assert "--output-dir" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--output-dir", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"run: {run}" in out and "steps: 1" in out
    assert main(["train", str(cfg), "--output-dir", str(run), "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", str(cfg), "--output-dir", str(run), "--resume"]) == 1
    assert "no complete checkpoint" in capsys.readouterr().err
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["train", str(cfg), "--output-dir", str(other)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_default_run_dir_is_under_the_workspace(make_config, capsys):
    """Without --output-dir the run goes to $TUNELOOP_HOME/runs/<name>-<time>/."""
    import os
    from pathlib import Path

    cfg = make_config(name="c.yaml", training={"max_steps": 1, "batch_size": 8},
                      data={"eval_fraction": 0.0}, save={"interval": 5})
    assert main(["train", str(cfg), "--no-progress"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("run: "))
    run = Path(line[5:])
    assert run.parent == Path(os.environ["TUNELOOP_HOME"]).resolve() / "runs"
    assert run.name.startswith("t-") and (run / "model" / "tuneloop_model.json").exists()


def test_help_is_the_docstring(capsys):
    """The command's docstring is its help."""
    with pytest.raises(SystemExit):
        from tuneloop.cli import cli

        cli.main(["train", "--help"], standalone_mode=True)
    assert "Fine-tune (LoRA or full" in capsys.readouterr().out


@pytest.mark.integration
def test_lora_on_embedded_model_from_cli(tmp_path):
    """Embedded SmolLM2: `tuneloop train examples/configs/lora.yaml` for a few steps lowers the
    held-out eval loss, and RUN/model loads with plain peft (AutoPeftModelForCausalLM)."""
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    run = tmp_path / "run"
    code = main(["train", "examples/configs/lora.yaml", "--output-dir", str(run), "--no-progress",
                 "--set", "training.max_steps=4", "--set", "training.batch_size=3",
                 "--set", "data.max_length=128", "--set", "eval.interval=null",
                 "--set", "save.interval=null", "--set", "logging.report_to=[]"])
    assert code == 0
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 4]
    assert evals[1]["eval_loss"] < evals[0]["eval_loss"]

    model = AutoPeftModelForCausalLM.from_pretrained(run / "model").eval()
    tok = AutoTokenizer.from_pretrained(run / "model")
    ids = tok.apply_chat_template([{"role": "user", "content": "What does CPU stand for?"}],
                                  add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert torch.isfinite(logits).all() and logits.shape[-1] >= len(tok) - 1
    meta = json.loads((run / "model" / "tuneloop_model.json").read_text())
    assert meta["base_model"] == "smollm2-135m-instruct" and meta["method"] == "lora"

    # R14: the fine-tuned run, used as a model reference, answers and stops at end-of-turn.
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Name one primary colour."}\n', encoding="utf-8")
    answers = tmp_path / "answers.jsonl"
    assert main(["generate", "--model", str(run), "--input", str(prompts), "--out", str(answers),
                 "--max-new-tokens", "96"]) == 0
    [row] = [json.loads(line) for line in answers.read_text().splitlines()]
    assert row["finish_reason"] == "stop" and row["output"].strip()


def test_a_training_run_records_its_allocator(make_config, tmp_path):
    """The installed `tuneloop` script runs training with jemalloc, and run.json says so: a
    run's peak memory depends on its malloc."""
    from tuneloop import allocator

    assert allocator.find_jemalloc({}), "libjemalloc2 missing: `make test` installs it"
    config = make_config(training={"max_steps": 1}, save={"interval": None},
                         eval={"at_start": False, "interval": None})
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.CHOICE_ENV)}
    script = Path(sys.executable).parent / "tuneloop"  # pyproject's [project.scripts] entry
    proc = subprocess.run([str(script), "train", str(config), "--output-dir", str(run),
                           "--no-progress"], env=env, cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "run.json").read_text())["allocator"] == "jemalloc"
