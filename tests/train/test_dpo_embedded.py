"""A short DPO run on the embedded SmolLM2 with LoRA learns a preference it can generalise."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from tuneloop.rundir import read_metrics
from tuneloop.train import train
from tuneloop.train.config import load_config

_WORDS = ["apple", "river", "stone", "cloud", "tiger", "piano", "candle", "forest", "silver",
          "garden", "rocket", "castle", "orange", "window", "butter", "dragon", "summer",
          "pencil", "jacket", "ladder", "mirror", "planet", "violin", "wizard", "harbor",
          "meadow", "lantern", "coffee", "marble", "falcon", "thunder", "velvet", "anchor",
          "bridge", "cactus", "pepper"]


def _pairs(path: Path, words: list[str]) -> Path:
    """Chosen follows the instruction (capitals), rejected ignores it (lower case)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"prompt": f"Write the word {w} in capital letters.",
                                 "chosen": w.upper(), "rejected": w}) + "\n" for w in words)
    return path


@pytest.mark.integration
def test_short_lora_dpo_raises_held_out_reward_accuracy(tmp_path):
    """Step 0 (policy == reference): held-out reward accuracy 0, loss ln 2; after 8 LoRA DPO
    steps on 28 pairs the 8 unseen pairs mostly prefer the chosen answer."""
    words = list(_WORDS)
    random.Random(0).shuffle(words)
    cfg = {"name": "dpo", "model": "smollm2-135m-instruct", "method": "lora",
           "objective": "dpo", "dpo": {"beta": 0.1},
           "data": {"train": [str(_pairs(tmp_path / "train.jsonl", words[:28]))],
                    "eval": [str(_pairs(tmp_path / "eval.jsonl", words[28:]))],
                    "max_length": 64},
           "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
           "training": {"max_steps": 8, "batch_size": 4, "learning_rate": 1e-3, "seed": 0,
                        "scheduler": "constant"},
           "eval": {"batch_size": 8}, "save": {"interval": None},
           "logging": {"interval": 1, "report_to": [], "progress": False}}
    path = tmp_path / "dpo.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    res = train(load_config(path), output_dir=tmp_path / "run", progress=False)
    rows = read_metrics(res.run_dir)
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 8]
    before, after = evals
    assert before["reward_accuracy"] == 0.0 and abs(before["eval_loss"] - 0.6931) < 1e-3
    assert after["reward_accuracy"] >= 0.75, after
    assert after["reward_margin"] > 0 and after["eval_loss"] < before["eval_loss"]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert train_rows[-1]["reward_accuracy"] > train_rows[0]["reward_accuracy"]
