"""Chunked LM head + cross-entropy: the same loss and gradients as the full-logits path."""

from __future__ import annotations

import pytest
import torch
from test_collate import _examples, _grads
from tiny import make_tiny_model

from tuneloop.train import lm_loss
from tuneloop.train.collate import collate_packed, enable_packed_attention, packed_loss


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 7 tokens (tiny vocab), so every batch here spans many chunks."""
    monkeypatch.setattr(lm_loss, "_CHUNK_ELEMENTS", 7 * 400)


def _loss_and_grads(model, batch, chunked):
    model.zero_grad()
    loss_sum, n = packed_loss(model, batch, chunked=chunked)
    (loss_sum / n).backward()
    return (loss_sum / n).item(), n, _grads(model)


def _compare(model, examples):
    enable_packed_attention(model)
    batch = collate_packed(examples)
    ref_loss, ref_n, ref = _loss_and_grads(model, batch, chunked=False)
    loss, n, got = _loss_and_grads(model, batch, chunked=True)
    assert n == ref_n > 7 * 2
    assert abs(loss - ref_loss) < 1e-5
    assert got.keys() == ref.keys() and got
    for name, g in got.items():
        assert torch.allclose(g, ref[name], atol=1e-5, rtol=1e-5), name
    return got


@pytest.mark.parametrize("tied", [True, False])
def test_full_model_same_loss_and_grads(tiny_tokenizer, small_chunks, tied):
    """Full fine-tuning, tied and untied embeddings: loss and every gradient equal to 1e-5."""
    model = make_tiny_model(tiny_tokenizer, seed=3).float()
    if not tied:
        model.config.tie_word_embeddings = False
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone() * 1.5)
    assert lm_loss.plain_head(model) is model.lm_head
    grads = _compare(model, _examples(tiny_tokenizer, lengths=(9, 31, 4, 20), seed=2))
    head = "lm_head.weight" if not tied else "model.embed_tokens.weight"
    assert grads[head].abs().sum() > 0  # the head weight really got its gradient


def test_lora_model_same_loss_and_grads(tiny_tokenizer, small_chunks):
    """LoRA on the linear layers (frozen head): the adapter gradients equal to 1e-5."""
    from peft import LoraConfig, get_peft_model

    base = make_tiny_model(tiny_tokenizer, seed=4).float()
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "up_proj"],
                                            init_lora_weights=False))
    assert lm_loss.plain_head(model) is not None
    grads = _compare(model, _examples(tiny_tokenizer, lengths=(12, 30, 17), seed=5))
    assert all("lora_" in n for n in grads)


def test_lora_on_head_falls_back_to_full_logits(tiny_tokenizer):
    """A LoRA-wrapped head is not a plain Linear: packed_loss uses the model's own head."""
    from peft import LoraConfig, get_peft_model

    base = make_tiny_model(tiny_tokenizer, seed=4).float()
    base.config.tie_word_embeddings = False
    base.lm_head.weight = torch.nn.Parameter(base.lm_head.weight.detach().clone())
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "lm_head"]))
    assert lm_loss.plain_head(model) is None


def test_no_grad_and_autocast_match(tiny_tokenizer, small_chunks):
    """Eval (no grad) gives the same loss; under bf16 autocast it matches the unchunked bf16
    path (same matmul dtype, fp32 softmax) to 1e-3."""
    model = make_tiny_model(tiny_tokenizer, seed=6).float()
    enable_packed_attention(model)
    batch = collate_packed(_examples(tiny_tokenizer, lengths=(25, 14), seed=7))
    with torch.no_grad():
        a, n = packed_loss(model, batch, chunked=False)
        b, _ = packed_loss(model, batch, chunked=True)
        assert abs(a.item() - b.item()) / n < 1e-5
        with torch.autocast("cpu", dtype=torch.bfloat16):
            c, _ = packed_loss(model, batch, chunked=False)
            d, _ = packed_loss(model, batch, chunked=True)
    assert abs(c.item() - d.item()) / n < 1e-3
    # The head behaves normally again outside packed_loss (generation, other callers).
    ids = batch["input_ids"][:, :5]
    assert model(input_ids=ids).logits.shape[-1] == model.config.vocab_size


def test_deep_copy_keeps_its_own_head(tiny_tokenizer):
    """After packed_loss, a deep copy (e.g. a reference model) computes with ITS weights."""
    import copy

    model = make_tiny_model(tiny_tokenizer, seed=8).float()
    enable_packed_attention(model)
    batch = collate_packed(_examples(tiny_tokenizer, lengths=(10, 12), seed=9))
    packed_loss(model, batch)  # installs the flagged head forward
    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone.lm_head.weight.mul_(2.0)
        ids = batch["input_ids"][:, :6]
        a = model(input_ids=ids).logits
        b = clone(input_ids=ids).logits
        assert torch.allclose(b, clone.model(input_ids=ids).last_hidden_state
                              @ clone.lm_head.weight.T, atol=1e-5)
    assert not torch.allclose(a, b)


def test_chunk_size_scales_with_vocab():
    """About _CHUNK_ELEMENTS logits per chunk, never zero rows."""
    assert lm_loss.chunk_rows(49_152) == lm_loss._CHUNK_ELEMENTS // 49_152
    assert lm_loss.chunk_rows(10**9) == 1


def test_a_second_backward_is_refused_not_silently_rescaled():
    """The gradients are scaled in place in backward; a retain_graph second backward would scale
    them twice, so autograd's version check must refuse it rather than return wrong gradients."""
    hidden = torch.randn(5, 8, requires_grad=True)
    weight = torch.randn(11, 8, requires_grad=True)
    loss = lm_loss.chunked_linear_cross_entropy(hidden, weight, torch.randint(0, 11, (5,)))
    (loss * 0.5).backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_no_rows_give_zero_gradients():
    """With no trained positions the weight gradient is zero, not an uninitialised buffer."""
    hidden = torch.randn(0, 8, requires_grad=True)
    weight = torch.randn(11, 8, requires_grad=True)
    loss = lm_loss.chunked_linear_cross_entropy(hidden, weight, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert float(loss) == 0.0
    assert torch.count_nonzero(weight.grad) == 0
