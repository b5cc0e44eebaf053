"""Parity: tuneloop's DPO loss equals TRL's DPOTrainer loss on the same tiny model, pairs, beta."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from pairs import write_pair_rows

from tuneloop.train.objectives.dpo import collate_pairs, dpo_losses, render_pair, sequence_logps

BETA = 0.1


def _trl_trainer(policy, ref, tokenizer, tmp_path, rows):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=str(tmp_path / "trl"), beta=BETA, report_to=[], use_cpu=True,
                     per_device_train_batch_size=len(rows), max_length=None,
                     dataset_num_proc=None, bf16=False, fp16=False)
    data = Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"],
                               "rejected": r["rejected"]} for r in rows])
    return DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=data,
                      processing_class=tokenizer)


def _pairs_and_trl_rows(tiny_tokenizer, path):
    """Our rendered pairs, and the same token ids cut where TRL expects them: the prompt, then
    each answer through its end-of-turn token (the trained tokens)."""
    from tuneloop.data.load import load_records
    from tuneloop.data.render import Renderer

    renderer = Renderer(tiny_tokenizer, max_length=128)
    records = load_records(path).records
    pairs = [render_pair(renderer, r)[0] for r in records]
    rows = []
    for pair, rec in zip(pairs, records, strict=True):
        cut = {}
        for name, side in (("chosen", pair.chosen), ("rejected", pair.rejected)):
            trained = [i for i, x in enumerate(side.labels) if x != -100]
            cut[name] = (side.input_ids[:trained[0]], side.input_ids[trained[0]:trained[-1] + 1])
        assert cut["chosen"][0] == cut["rejected"][0]  # the same prompt tokens
        rows.append({"prompt": rec.messages[:-1],
                     "chosen": [{"role": "assistant", "content": rec.messages[-1]["content"]}],
                     "rejected": [{"role": "assistant", "content": rec.rejected}],
                     "prompt_ids": cut["chosen"][0], "chosen_ids": cut["chosen"][1],
                     "rejected_ids": cut["rejected"][1]})
    return pairs, rows


@pytest.fixture
def models(tiny_model_dir):
    """A reference model and a policy that differs from it (perturbed weights)."""
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    policy = copy.deepcopy(ref)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    return policy, ref


def test_loss_equals_trl_dpo_trainer(models, tiny_tokenizer, tmp_path):
    """Same pairs, same token ids, beta 0.1: tuneloop's packed DPO loss (mean over pairs) equals
    TRL DPOTrainer.compute_loss (its collator, padded forward, reference forward) within 1e-5."""
    policy, ref = models
    pairs, rows = _pairs_and_trl_rows(tiny_tokenizer, write_pair_rows(tmp_path / "p.jsonl", 6,
                                                                      messages=True))
    trainer = _trl_trainer(policy, ref, tiny_tokenizer, tmp_path, rows)
    # TRL's own tokenization of the conversational rows gives the same prompt and answers,
    # plus the template's trailing "\n" after <|im_end|> (never trained by tuneloop).
    newline = tiny_tokenizer("\n", add_special_tokens=False).input_ids
    for got, want in zip(trainer.train_dataset, rows, strict=True):
        assert got["prompt_ids"] == want["prompt_ids"]
        assert got["chosen_ids"] == want["chosen_ids"] + newline
        assert got["rejected_ids"] == want["rejected_ids"] + newline

    inputs = trainer.data_collator([{k: r[k] for k in ("prompt_ids", "chosen_ids",
                                                       "rejected_ids")} for r in rows])
    policy.train()  # no dropout in this model; the mode TRL computes the loss in
    with torch.no_grad():
        trl_loss = trainer.compute_loss(policy, inputs).item()

    from tuneloop.train.collate import enable_packed_attention

    ours_policy, ours_ref = copy.deepcopy(policy), copy.deepcopy(ref)
    enable_packed_attention(ours_policy)
    enable_packed_attention(ours_ref)
    packed = collate_pairs(pairs)
    with torch.no_grad():
        pol, counts = sequence_logps(ours_policy, packed)
        ref_logps, _ = sequence_logps(ours_ref, packed)
    losses, _, _ = dpo_losses(pol, ref_logps, counts, beta=BETA)
    ours = losses.mean().item()
    print(f"parity: tuneloop {ours:.8f} trl {trl_loss:.8f} diff {abs(ours - trl_loss):.2e}")
    assert abs(ours - math.log(2)) > 1e-3  # a real comparison, not two ln 2s
    assert ours == pytest.approx(trl_loss, abs=1e-5)


def test_trl_and_tuneloop_both_give_ln2_when_policy_is_reference(models, tiny_tokenizer,
                                                                  tmp_path):
    """Policy == reference: both losses are ln 2 within 1e-4."""
    _, ref = models
    pairs, rows = _pairs_and_trl_rows(tiny_tokenizer, write_pair_rows(tmp_path / "p.jsonl", 4))
    policy = copy.deepcopy(ref)
    trainer = _trl_trainer(policy, ref, tiny_tokenizer, tmp_path, rows)
    inputs = trainer.data_collator([{k: r[k] for k in ("prompt_ids", "chosen_ids",
                                                       "rejected_ids")} for r in rows])
    with torch.no_grad():
        trl_loss = trainer.compute_loss(policy, inputs).item()
        pol, counts = sequence_logps(policy, collate_pairs(pairs))
    ours = dpo_losses(pol, pol, counts, beta=BETA)[0].mean().item()
    assert trl_loss == pytest.approx(math.log(2), abs=1e-4)
    assert ours == pytest.approx(math.log(2), abs=1e-4)
