"""Multiple-choice scoring equals lm-evaluation-harness on the same items and model (R20)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from lmeval_tasks import mc_task_yaml

from tuneloop.errors import EvalError
from tuneloop.eval.mc import encode_pair, load_mc_items, score_mc

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mc" / "general.jsonl"

@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from tuneloop.models import load_model

    return load_model(str(tiny_model_dir))


def test_encode_pair_moves_trailing_space(tiny_tokenizer):
    """lm-eval's _encode_pair: context whitespace moves to the continuation (R20)."""
    ctx, cont = encode_pair(tiny_tokenizer, "Answer: ", "Paris")
    ctx2, cont2 = encode_pair(tiny_tokenizer, "Answer:", " Paris")
    assert (ctx, cont) == (ctx2, cont2)
    whole = tiny_tokenizer.encode("Answer: Paris")
    assert ctx + cont == whole and cont


def test_mc_matches_lm_eval_harness(tiny, tiny_model_dir, tmp_path, monkeypatch):
    """acc, acc_norm and every per-choice loglikelihood equal lm-eval's HFLM on 20 items (R20)."""
    from tuneloop.eval.mc import lm_eval_model_args, run_lm_eval

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    model, tokenizer = tiny
    items = load_mc_items(EXAMPLE)
    ours = score_mc(model, tokenizer, items, batch_size=4, progress=False)

    task_dir = tmp_path / "task"
    task_dir.mkdir()
    data = task_dir / "items.jsonl"
    data.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    task = mc_task_yaml("tuneloop_mc_parity", data, ("acc", "acc_norm"))
    (task_dir / "task.yaml").write_text(task, encoding="utf-8")
    # the same pass-through `eval mc --lm-eval TASKS` uses: model "hf", the resolved HF dir
    assert lm_eval_model_args(str(tiny_model_dir)) == (
        f"pretrained={tiny_model_dir.resolve()},dtype=float32")
    out = run_lm_eval(str(tiny_model_dir), "tuneloop_mc_parity", include_path=str(task_dir),
                      batch_size=3, log_samples=True)
    res = out["results"]["tuneloop_mc_parity"]
    assert ours.n == len(items) == 20
    assert ours.acc == res["acc,none"]
    assert ours.acc_norm == res["acc_norm,none"]
    # the items are chosen so the two metrics disagree on the tiny model: both paths are exercised
    assert any(r["pred"] != r["pred_norm"] for r in ours.items)
    samples = sorted(out["samples"]["tuneloop_mc_parity"], key=lambda s: s["doc_id"])
    for row, sample in zip(ours.items, samples, strict=True):
        theirs = [resp[0] for resp in sample["filtered_resps"]]
        assert len(theirs) == len(row["loglikelihoods"])
        for a, b in zip(row["loglikelihoods"], theirs, strict=True):
            assert math.isclose(a, b, abs_tol=1e-4), (sample["doc_id"], a, b)


def test_lm_eval_model_args_for_runs(tuned_run_dir, tmp_path):
    """A full-weights run passes its model/ dir; a LoRA run its base dir plus peft=ADAPTER."""
    from peft import LoraConfig, get_peft_model

    from tuneloop.eval.mc import lm_eval_model_args
    from tuneloop.models import load_model, save_model_metadata

    args = lm_eval_model_args(str(tuned_run_dir))
    assert args.startswith(f"pretrained={(tuned_run_dir / 'model').resolve()},")
    assert "peft=" not in args
    base = tuned_run_dir / "model"
    model, tokenizer = load_model(str(base))
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    run = tmp_path / "lora-run"
    lora.save_pretrained(run / "model")
    tokenizer.save_pretrained(run / "model")
    save_model_metadata(run / "model", base_model=str(base), method="lora", template="auto",
                        format="chat")
    args = lm_eval_model_args(str(run))
    assert f"pretrained={base.resolve()}," in args
    assert args.endswith(f",peft={(run / 'model').resolve()}")


def test_mc_file_errors_name_line(tmp_path):
    """A malformed item names file:line and the field (R10)."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"question": "q", "choices": ["a", "b"], "answer": 0}) + "\n"
        + json.dumps({"question": "q", "choices": ["a", "b"], "answer": 5}) + "\n",
        encoding="utf-8",
    )
    with pytest.raises(EvalError) as info:
        load_mc_items(bad)
    assert f"{bad}:2" in info.value.message() and "answer" in info.value.message()
    bad.write_text('{"question": "q", "choices": ["a"]\n', encoding="utf-8")
    with pytest.raises(EvalError, match="invalid JSON") as info:
        load_mc_items(bad)
    assert info.value.where == f"{bad}:1"
