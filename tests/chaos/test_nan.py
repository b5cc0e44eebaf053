"""A non-finite loss, injected through one data row and through the learning rate, stops a real
`tuneloop train` with the step named, a non-zero exit and status failed (R8)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from chaoshelp import train_rows, write_config, write_rows

POISON = "Ω"  # two bytes no other row or template token uses: byte-level tokens of their own


@pytest.fixture(scope="module")
def poisoned_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with untied output weights and a NaN input embedding for the byte tokens
    of POISON: only an example that contains POISON has a non-finite loss."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = tok(POISON, add_special_tokens=False)["input_ids"]
    clean = set(tok("Describe the sea (item 7). Item 7: blue wide quick nine deep green opens "
                    "lazy <|im_start|>user\n<|im_end|>\n", add_special_tokens=False)["input_ids"])
    assert ids and not clean & set(ids)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone())
    with torch.no_grad():
        model.get_input_embeddings().weight[ids] = float("nan")
    out = tmp_path_factory.mktemp("poisoned") / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _check_failed(run: Path, log: Path, rc: int) -> int:
    text = log.read_text()
    assert rc == 1, text[-3000:]
    assert "Traceback" not in text
    m = re.search(r"loss or gradient became NaN/inf at step (\d+)", text)
    assert m, text[-3000:]
    bad = int(m.group(1))
    rows = train_rows(run)
    assert [r["step"] for r in rows] == list(range(1, bad))  # nothing non-finite logged
    assert all(math.isfinite(r["loss"]) for r in rows)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and f"at step {bad}" in info["error"]
    assert not (run / "model").exists()
    return bad


def test_nan_from_one_data_row_stops_at_its_step(launcher, poisoned_model, tmp_path):
    """R8: one row holding the poisoned token makes its step's loss NaN: exit 1 naming that
    step (after earlier finite steps), failed in run.json; the same data without that row
    trains to the end on the same model (so it is the row, not the model)."""
    cfg = write_config(tmp_path / "cfg.yaml", poisoned_model,
                       write_rows(tmp_path / "bad.jsonl", 23, extra=[f"Item 23: {POISON}"]),
                       method="full", lora=None,
                       training={"max_steps": 6, "batch_size": 4, "learning_rate": 1e-3},
                       save={"interval": 1, "keep_last": 10})
    run, log = tmp_path / "run", tmp_path / "run.log"
    rc = launcher.run(["train", cfg, "--output-dir", run, "--no-progress"], log)
    bad = _check_failed(run, log, rc)
    saved = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert saved == [f"step-{s:06d}" for s in range(1, bad)]  # never saved over a good one

    clean = write_config(tmp_path / "clean.yaml", poisoned_model,
                         write_rows(tmp_path / "good.jsonl", 24), method="full", lora=None,
                         training={"max_steps": 6, "batch_size": 4, "learning_rate": 1e-3},
                         save={"interval": 100})
    rc = launcher.run(["train", clean, "--output-dir", tmp_path / "clean", "--no-progress"],
                      tmp_path / "clean.log")
    assert rc == 0, (tmp_path / "clean.log").read_text()[-3000:]


def test_nan_from_a_huge_learning_rate_stops_with_the_step(launcher, tiny_model_dir, tmp_path):
    """R8: learning rate 1e30 makes a later step non-finite: exit 1, that step named, failed."""
    cfg = write_config(tmp_path / "cfg.yaml", tiny_model_dir, write_rows(tmp_path / "d.jsonl", 24),
                       method="full", lora=None,
                       training={"max_steps": 5, "learning_rate": 1e30, "max_grad_norm": None},
                       save={"interval": 100})
    run, log = tmp_path / "run", tmp_path / "run.log"
    rc = launcher.run(["train", cfg, "--output-dir", run, "--no-progress"], log)
    assert _check_failed(run, log, rc) >= 2
