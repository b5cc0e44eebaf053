"""DPO objective: loss formulas, ln 2 at the start, packing, resume and the reference cache."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pairs import write_pair_rows
from runrows import train_rows_by_step

from tuneloop.rundir import read_metrics
from tuneloop.train import train
from tuneloop.train.checkpoint import find_latest_complete
from tuneloop.train.config import load_config
from tuneloop.train.objectives.dpo import (
    REFERENCE_CACHE,
    collate_pairs,
    dpo_losses,
    final_answer_only,
    render_pair,
    sequence_logps,
)

KILLER = Path(__file__).with_name("killer.py")


@pytest.fixture(scope="module")
def pair_data(tmp_path_factory) -> Path:
    return write_pair_rows(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", 24)


@pytest.fixture
def dpo_config(make_config, pair_data):
    def _make(**sections):
        base = {"objective": "dpo", "data": {"train": [str(pair_data)], "eval_fraction": 0.2,
                                             "max_length": 96},
                "training": {"max_steps": 4, "batch_size": 4, "learning_rate": 1e-3, "seed": 1,
                             "scheduler": "constant"},
                "save": {"interval": 2, "keep_last": 3}}
        for key, value in sections.items():
            base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
        return make_config(**base)
    return _make


def test_loss_types_match_hand_formulas():
    """sigmoid (with label smoothing), ipo (per-token means) and hinge against plain math."""
    policy = torch.tensor([[-3.0, -5.0], [-7.5, -2.0], [-1.0, -1.0]], dtype=torch.float64)
    ref = torch.tensor([[-4.0, -4.5], [-6.0, -3.0], [-1.5, -0.5]], dtype=torch.float64)
    counts = torch.tensor([[3.0, 5.0], [4.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    beta, eps = 0.3, 0.1

    def sig(v):
        return 1 / (1 + math.exp(-v))

    for i in range(3):
        pc, pr = policy[i].tolist()
        rc, rr = ref[i].tolist()
        nc, nr = counts[i].tolist()
        x = (pc - rc) - (pr - rr)
        want = {
            "sigmoid": -(1 - eps) * math.log(sig(beta * x)) - eps * math.log(sig(-beta * x)),
            "ipo": ((pc - rc) / nc - (pr - rr) / nr - 1 / (2 * beta)) ** 2,
            "hinge": max(0.0, 1 - beta * x),
        }
        for kind, value in want.items():
            losses, cr, rj = dpo_losses(policy, ref, counts, beta=beta, loss=kind,
                                        label_smoothing=eps if kind == "sigmoid" else 0.0)
            assert losses[i].item() == pytest.approx(value, abs=1e-12), (kind, i)
            assert cr[i].item() == pytest.approx(beta * (pc - rc), abs=1e-12)
            assert rj[i].item() == pytest.approx(beta * (pr - rr), abs=1e-12)


def test_final_answer_only_masks_earlier_turns():
    m = -100
    assert final_answer_only([m, 5, 6, m, m, 7, 8, m]) == [m, m, m, m, m, 7, 8, m]
    assert final_answer_only([m, 1, 2]) == [m, 1, 2]


def test_packed_pairs_equal_one_pair_at_a_time(tiny_model_dir, tiny_tokenizer, pair_data):
    """Packing 2N documents in one row gives each answer the log-prob it has alone, and only
    answer tokens count (the prompt's tokens do not change the log-prob's token count)."""
    from transformers import AutoModelForCausalLM

    from tuneloop.data.load import load_records
    from tuneloop.data.render import Renderer
    from tuneloop.train.collate import enable_packed_attention

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    enable_packed_attention(model)
    renderer = Renderer(tiny_tokenizer, max_length=96)
    records = load_records(pair_data).records[:5]
    pairs = [render_pair(renderer, r)[0] for r in records]
    with torch.no_grad():
        together, counts = sequence_logps(model, collate_pairs(pairs))
        alone = torch.cat([sequence_logps(model, collate_pairs([p]))[0] for p in pairs])
    assert torch.allclose(together, alone, atol=1e-5)
    for k, (pair, rec) in enumerate(zip(pairs, records, strict=True)):
        answer = tiny_tokenizer(rec.messages[-1]["content"] + "<|im_end|>",
                                add_special_tokens=False).input_ids
        assert counts[k, 0].item() == len(answer)
        assert sum(1 for x in pair.chosen.labels if x != -100) == len(answer)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_first_step_loss_is_ln2(dpo_config, tmp_path, method):
    """Policy == reference at step 1 (adapter B = 0; full FT: precomputed from the same
    weights), so the first logged loss is ln 2 and the reward accuracy/margin are 0."""
    cfg = dpo_config(method=method, training={"max_steps": 1}, save={"interval": None},
                     eval={"at_start": False})
    res = train(load_config(cfg), output_dir=tmp_path / method, progress=False)
    row = train_rows_by_step(res.run_dir)[1]
    assert row["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert abs(row["reward_margin"]) < 1e-4
    assert row["logps_chosen"] < 0 and row["logps_rejected"] < 0
    assert (res.run_dir / REFERENCE_CACHE).exists() == (method == "full")
    evals = [r for r in read_metrics(res.run_dir) if r["kind"] == "eval"]
    assert evals and {"reward_accuracy", "reward_margin", "logps_chosen",
                      "logps_rejected"} <= set(evals[-1])


@pytest.mark.parametrize("method", ["lora", "full"])
def test_kill_then_resume_equals_uninterrupted(dpo_config, tmp_path, method):
    """R1/R2 for DPO: SIGKILL after step 3 (last save at 2), resume: steps 3-4 and the final
    weights equal the uninterrupted run's; full FT reuses the cached reference log-probs."""
    sections = {"method": method, "training": {"scheduler": "cosine", "warmup_steps": 1},
                "lora": {"r": 4, "alpha": 8, "dropout": 0.1}, "eval": {"at_start": False}}
    cfg = dpo_config(**sections)
    full = train(load_config(cfg), output_dir=tmp_path / "full", progress=False)
    ref = train_rows_by_step(full.run_dir)

    run = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(KILLER), str(cfg), str(run), "--after-step", "3"],
                          check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert find_latest_complete(run / "checkpoints").name == "step-000002"
    cache = run / REFERENCE_CACHE
    stamp = cache.stat().st_mtime_ns if method == "full" else None

    resumed = train(load_config(cfg), resume=True, output_dir=run, progress=False)
    assert resumed.resumed_from == 2 and resumed.steps == 4
    got = train_rows_by_step(run, after_resume=True)
    assert sorted(got) == [3, 4]
    for step in got:
        for key in ("loss", "reward_margin", "reward_accuracy", "logps_chosen"):
            assert got[step][key] == pytest.approx(ref[step][key], abs=1e-6), (step, key)
    if method == "full":
        assert cache.stat().st_mtime_ns == stamp  # reused, not recomputed
    from safetensors.torch import load_file

    name = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    a = load_file(str(full.run_dir / "model" / name))
    b = load_file(str(run / "model" / name))
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max().item() < 1e-6, k


def test_dpo_refuses_rows_that_are_not_pairs(make_config, chat_data, tmp_path):
    from tuneloop.errors import TrainingError

    cfg = make_config(objective="dpo")
    with pytest.raises(TrainingError, match="preference pairs"):
        train(load_config(cfg), output_dir=tmp_path / "r", progress=False)
