"""Padding-free packing: packed loss equals unpacked loss, documents stay apart, batch plans hold."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny import make_tiny_model

from tuneloop.errors import DataError
from tuneloop.train.collate import (
    IGNORE_INDEX,
    collate_packed,
    collate_padded,
    enable_packed_attention,
    kernel_dtype,
    packed_loss,
    plan_batches,
    split_by_tokens,
)

ATTENTIONS = ["sdpa", "tuneloop_varlen"]


@dataclass
class Ex:
    """Stand-in for tuneloop.data.render.RenderedExample (collate duck-types on these fields)."""

    input_ids: list[int]
    labels: list[int]
    n_trained: int = 0
    prompt_truncated: int = 0


def _examples(tokenizer, lengths=(7, 1, 23, 12, 40), seed=0) -> list[Ex]:
    """Random token rows of the given lengths; prompt half masked, answer half trained."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(3, len(tokenizer), (n,), generator=g).tolist()
        cut = n // 2
        out.append(Ex(ids, [IGNORE_INDEX] * cut + ids[cut:]))
    return out


def _padded_loss(model, examples, pad_id):
    """Reference: the plain padded batch with attention_mask and full logits, summed CE."""
    batch = collate_padded(examples, pad_id)
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).logits
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        batch["labels"][:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return loss, batch["n_trained_tokens"]


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_packed_loss_and_grads_equal_unpacked(tiny_tokenizer, attention):
    """Packed loss == per-example padded loss within 1e-5 (fp32), and so are the gradients."""
    model = make_tiny_model(tiny_tokenizer, seed=1).float()
    examples = _examples(tiny_tokenizer)

    model.zero_grad()
    ref_sum, ref_n = _padded_loss(model, examples, tiny_tokenizer.pad_token_id)
    (ref_sum / ref_n).backward()
    ref_grads = _grads(model)

    assert enable_packed_attention(model, attention) == attention
    model.zero_grad()
    batch = collate_packed(examples)
    loss_sum, n = packed_loss(model, batch)
    (loss_sum / n).backward()
    grads = _grads(model)

    assert n == ref_n == batch["n_trained_tokens"]
    assert abs((loss_sum / n).item() - (ref_sum / ref_n).item()) < 1e-5
    assert grads.keys() == ref_grads.keys()
    for name, g in grads.items():
        assert torch.allclose(g, ref_grads[name], atol=1e-6, rtol=1e-4), name


def test_lora_model_packs_the_same(tiny_tokenizer):
    """A PEFT LoRA model takes the same packed path: same loss as its padded batch (1e-5)."""
    from peft import LoraConfig, get_peft_model

    base = make_tiny_model(tiny_tokenizer, seed=4).float()
    model = get_peft_model(
        base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    )
    examples = _examples(tiny_tokenizer, lengths=(9, 30, 4), seed=5)
    ref_sum, ref_n = _padded_loss(model, examples, tiny_tokenizer.pad_token_id)
    assert enable_packed_attention(model) == "tuneloop_varlen"
    loss_sum, n = packed_loss(model, collate_packed(examples))
    assert n == ref_n
    assert abs((loss_sum / n).item() - (ref_sum / ref_n).item()) < 1e-5
    (loss_sum / n).backward()
    assert all(p.grad is not None for name, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_documents_do_not_attend_to_each_other(tiny_tokenizer, attention):
    """Changing document A's tokens leaves document B's logits unchanged (and A's do change)."""
    model = make_tiny_model(tiny_tokenizer, seed=2).float().eval()
    enable_packed_attention(model, attention)
    a, b = _examples(tiny_tokenizer, lengths=(15, 11), seed=3)
    a2 = Ex([(t + 5) % len(tiny_tokenizer) for t in a.input_ids], a.labels)

    def logits(docs):
        batch = collate_packed(docs)
        kw = {k: batch[k] for k in ("input_ids", "position_ids")}
        cu = batch["cu_seqlens"]
        with torch.no_grad():
            return model(
                **kw,
                use_cache=False,
                cu_seq_lens_q=cu,
                cu_seq_lens_k=cu,
                max_length_q=batch["max_seqlen"],
                max_length_k=batch["max_seqlen"],
            ).logits[0]

    before, after = logits([a, b]), logits([a2, b])
    assert torch.allclose(before[15:], after[15:], atol=1e-6)
    assert not torch.allclose(before[:15], after[:15], atol=1e-3)
    # B packed after A gives the same logits as B alone: nothing leaks from A at all.
    assert torch.allclose(logits([b]), before[15:], atol=1e-5)


def test_attention_kernels_get_the_autocast_dtype_though_rotary_promotes_q(
        tiny_tokenizer, monkeypatch):
    """Under bf16 autocast the rotary embedding hands attention fp32 q/k beside a bf16 v; the
    varlen kernel must be given autocast's dtype (on the H200 it was skipped for fp32 q and every
    document ran as its own SDPA call)."""
    from transformers import AttentionInterface

    model = make_tiny_model(tiny_tokenizer, seed=2).float().eval()
    enable_packed_attention(model, "tuneloop_varlen")
    seen = []
    inner = AttentionInterface._global_mapping["tuneloop_varlen"]

    def recording(module, query, key, value, *args, **kwargs):
        seen.append((query.dtype, value.dtype, kernel_dtype(query)))
        return inner(module, query, key, value, *args, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, "tuneloop_varlen", recording)
    batch = collate_packed(_examples(tiny_tokenizer, lengths=(9, 6)))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False,
              cu_seq_lens_q=batch["cu_seqlens"], cu_seq_lens_k=batch["cu_seqlens"],
              max_length_q=batch["max_seqlen"], max_length_k=batch["max_seqlen"])
    assert seen, "the packed attention was not called"
    assert {(q, v) for q, v, _ in seen} == {(torch.float32, torch.bfloat16)}  # the premise
    assert {k for _, _, k in seen} == {torch.bfloat16}
    assert kernel_dtype(torch.zeros(1)) == torch.float32  # no autocast: as given


def _per_document_reference(query, key, value, bounds, groups):
    """(1, H, T, D) in, (T, H, D) out: causal SDPA per document, the meaning of a varlen call."""
    pieces = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True,
            enable_gqa=groups > 1)
        for a, b in itertools.pairwise(bounds)
    ]
    return torch.cat(pieces, dim=2)[0].transpose(0, 1)


def _fake_kernel(api):
    """A CPU stand-in for torch's varlen_attn with the keywords of one torch release; it computes
    the real result from its (T, H, D) inputs, so a wrong layout or mask shows as a wrong value."""

    def run(q, k, v, cu_q, cu_k, max_q, max_k, causal, scale, gqa):
        assert cu_q.dtype == torch.int32 and torch.equal(cu_q, cu_k)
        assert max_q == max_k == int((cu_q[1:] - cu_q[:-1]).max())
        assert causal, "the kernel was not asked for causal attention"
        groups = q.shape[1] // k.shape[1]
        assert groups == 1 or gqa, "fewer key/value heads given to a kernel without GQA"
        as_bhtd = [t.transpose(0, 1).unsqueeze(0) for t in (q, k, v)]
        return _per_document_reference(*as_bhtd, cu_q.tolist(), groups)

    if api == "2.10":
        def kernel(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False,
                   return_aux=None, scale=None):
            return run(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal, scale, False)
    elif api == "2.11":
        def kernel(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None,
                   scale=None, window_size=(-1, -1)):
            return run(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k,
                       tuple(window_size) == (-1, 0), scale, False)
    else:
        def kernel(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None,
                   scale=None, window_size=(-1, -1), enable_gqa=False):
            return run(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k,
                       tuple(window_size) == (-1, 0), scale, enable_gqa)
    return kernel


@pytest.mark.parametrize("api", ["2.10", "2.11", "2.13"])
@pytest.mark.parametrize("groups", [1, 3])
def test_the_varlen_kernel_is_called_right_whatever_its_torch_release(api, groups):
    """The CUDA kernel's keywords changed between releases (is_causal, window_size, enable_gqa);
    the call adapts, and repeats key/value heads itself where the kernel has no GQA."""
    from tuneloop.train.collate import call_varlen

    torch.manual_seed(0)
    bounds = [0, 5, 12, 13, 20]
    query = torch.randn(1, 6, 20, 8)
    key, value = torch.randn(1, 6 // groups, 20, 8), torch.randn(1, 6 // groups, 20, 8)
    cu = torch.tensor(bounds)
    out = call_varlen(_fake_kernel(api), query, key, value, cu, 7, scaling=None, groups=groups)
    expected = _per_document_reference(query, key, value, bounds, groups)
    assert out.shape == (20, 6, 8)
    assert torch.allclose(out, expected, atol=1e-6)


def test_with_default_kv_cache_documents_leak(tiny_tokenizer):
    """Why packed_loss passes use_cache=False: with a cache transformers ignores the packing."""
    model = make_tiny_model(tiny_tokenizer, seed=2).float().eval()
    model.set_attn_implementation("sdpa")
    a, b = _examples(tiny_tokenizer, lengths=(15, 11), seed=3)
    alone = collate_packed([b])
    both = collate_packed([a, b])
    with torch.no_grad():
        ref = model(
            input_ids=alone["input_ids"], position_ids=alone["position_ids"], use_cache=False
        ).logits[0]
        leaky = model(
            input_ids=both["input_ids"], position_ids=both["position_ids"], use_cache=True
        ).logits[0, 15:]
    assert not torch.allclose(ref, leaky, atol=1e-3)


def test_collate_packed_layout():
    """Positions restart per document, the first label of each document is masked, counts add up."""
    docs = [Ex([5, 6, 7], [5, 6, 7]), Ex([8, 9], [IGNORE_INDEX, 9]), Ex([4], [4])]
    b = collate_packed(docs, pad_to_multiple_of=8)
    assert b["input_ids"].shape == b["labels"].shape == b["position_ids"].shape == (1, 8)
    assert b["input_ids"][0, :6].tolist() == [5, 6, 7, 8, 9, 4]
    assert b["position_ids"][0].tolist() == [0, 1, 2, 0, 1, 0, 0, 1]
    assert b["labels"][0].tolist() == [-100, 6, 7, -100, 9, -100, -100, -100]
    assert b["cu_seqlens"].dtype == torch.int32
    assert b["cu_seqlens"].tolist() == [0, 3, 5, 6, 8]
    assert b["max_seqlen"] == 3
    assert b["n_real_tokens"] == 6 and b["n_trained_tokens"] == 3


def test_collate_padded_layout():
    """Right padding with the pad id, -100 labels and a zero attention mask on padding."""
    b = collate_padded([Ex([5, 6, 7], [5, 6, 7]), Ex([8], [8])], pad_token_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["n_real_tokens"] == 4


def test_bad_batches_are_refused_with_a_fix():
    """Empty batches, empty rows and misaligned labels raise DataError, never a silent mis-pack."""
    with pytest.raises(DataError, match="empty batch"):
        collate_packed([])
    with pytest.raises(DataError, match="no tokens"):
        collate_packed([Ex([], [])])
    with pytest.raises(DataError, match="2 input_ids but 1 labels") as err:
        collate_padded([Ex([1, 2], [1])], pad_token_id=0)
    assert err.value.fix


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 300), max_size=60),
    batch_size=st.integers(1, 9),
    seed=st.integers(0, 2**31),
    epoch=st.integers(0, 5),
    shuffle=st.booleans(),
)
def test_plan_batches_is_deterministic_and_covers_every_index(
    lengths, batch_size, seed, epoch, shuffle
):
    """Same (seed, epoch) → same plan; every index exactly once; batch size holds (R1)."""
    kw = {"batch_size": batch_size, "seed": seed, "epoch": epoch, "shuffle": shuffle}
    plan = plan_batches(lengths, **kw)
    assert plan == plan_batches(list(lengths), **kw)
    flat = [i for b in plan for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in plan)
    assert all(len(b) == batch_size for b in plan[:-1])  # only the last batch may be short
    if not shuffle:
        assert flat == list(range(len(lengths)))


@given(
    lengths=st.lists(st.integers(1, 300), min_size=1, max_size=40),
    max_tokens=st.one_of(st.none(), st.integers(1, 600)),
)
def test_split_by_tokens_keeps_every_example_once_in_order_under_the_budget(lengths, max_tokens):
    """The micro-batches of a batch hold each example once, in order, each under the budget or a
    single over-long example (never cut, never dropped); no budget keeps the batch whole."""
    batch = list(range(len(lengths)))[::-1]
    parts = split_by_tokens(batch, lengths, max_tokens)
    assert [i for part in parts for i in part] == batch
    assert all(part for part in parts)
    if max_tokens is None:
        assert parts == [batch]
    else:
        assert all(len(p) == 1 or sum(lengths[i] for i in p) <= max_tokens for p in parts)
        # greedy: a part closes only when the next example would not fit
        assert all(sum(lengths[i] for i in a) + lengths[b[0]] > max_tokens
                   for a, b in itertools.pairwise(parts))
    with pytest.raises(DataError):
        split_by_tokens(batch, lengths, 0)


def test_plan_batches_changes_with_epoch_and_seed():
    """A new epoch (or seed) reshuffles; the order is pinned so resumed runs replay it (R1)."""
    lengths = [10] * 50
    p = plan_batches(lengths, batch_size=4, seed=0, epoch=0)
    assert p != plan_batches(lengths, batch_size=4, seed=0, epoch=1)
    assert p != plan_batches(lengths, batch_size=4, seed=1, epoch=0)
    with pytest.raises(DataError):
        plan_batches(lengths, batch_size=0, seed=0, epoch=0)


def test_varlen_model_still_masks_padding_in_ordinary_batches(tiny_tokenizer):
    """After enable_packed_attention, a left-padded batch (generation/eval) still masks padding."""
    model = make_tiny_model(tiny_tokenizer, seed=6).float().eval()
    ids = torch.randint(3, len(tiny_tokenizer), (2, 12), generator=torch.Generator().manual_seed(6))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # row 1 is left-padded
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        enable_packed_attention(model, "tuneloop_varlen")
        got = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        unmasked = model(input_ids=ids, use_cache=False).logits
    assert torch.allclose(got[0], ref[0], atol=1e-6)
    assert torch.allclose(got[1, 5:], ref[1, 5:], atol=1e-5)
    assert not torch.allclose(unmasked[1, 5:], ref[1, 5:], atol=1e-3)
