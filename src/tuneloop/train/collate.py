"""Padding-free packing: batches carry only real tokens, and packed documents never see each other.

A micro-batch of N rendered examples becomes ONE row of T = sum(lengths) tokens with per-document
`position_ids` (0..len-1 for each document) and `cu_seqlens` (document boundaries). Two attention
paths keep the documents apart:

* ``"sdpa"`` (transformers' default): with ``attention_mask=None`` and ``use_cache=False``,
  transformers 5.x derives a block-causal mask from the position_ids restarts
  (``masking_utils.find_packed_sequence_indices``). Correct, but it materialises a T x T mask and
  SDPA then computes all T^2 scores, most of which are masked away.
* ``"tuneloop_varlen"`` (registered by :func:`enable_packed_attention`): attention runs per
  document from ``cu_seqlens`` (``torch.nn.attention.varlen.varlen_attn`` on CUDA, a causal SDPA
  call per document elsewhere), so the cost is sum(len^2) instead of T^2 and no mask is built.

Labels are shifted inside the loss (logits[:, :-1] vs labels[:, 1:]); the first label of every
document is set to -100 so the last token of one document never predicts the next one's first.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import random
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, Protocol

from tuneloop.errors import DataError, ModelError

IGNORE_INDEX = -100
VARLEN_ATTENTION = "tuneloop_varlen"


class _Example(Protocol):
    """What collate needs from a RenderedExample (duck-typed so any such object works)."""

    input_ids: Sequence[int]
    labels: Sequence[int]


def plan_batches(
    lengths: list[int],
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
) -> list[list[int]]:
    """Split example indices into batches; deterministic per (seed, epoch), each index once.

    ``batch_size`` is examples per batch (like TRL's per_device_train_batch_size). No length
    grouping: with packing there is no padding to save, and per-document attention costs
    sum(len^2) whatever the grouping, so grouping would only make batches less random. A token
    budget never changes this plan (and so never the optimisation): `split_by_tokens` cuts a
    batch into the micro-batches that actually run, and their gradients accumulate.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}", fix="pass batch_size >= 1")
    order = list(range(len(lengths)))
    if shuffle:
        # A string seed is hashed with SHA-512 by `random`, so the order is stable across runs,
        # platforms and Python versions (unlike hash()).
        random.Random(f"tuneloop-plan:{seed}:{epoch}").shuffle(order)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def split_by_tokens(batch: list[int], lengths: Sequence[int],
                    max_tokens: int | None) -> list[list[int]]:
    """Cut one batch (example indices, in order) into packed micro-batches of <= max_tokens tokens.

    An example longer than the budget gets a micro-batch of its own: it is never cut or dropped.
    None keeps the batch whole.
    """
    if max_tokens is None:
        return [batch]
    if max_tokens < 1:
        raise DataError(f"max_tokens must be >= 1, got {max_tokens}", fix="pass None or >= 1")
    parts: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i in batch:
        n = int(lengths[i])
        if current and tokens + n > max_tokens:
            parts.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += n
    if current:
        parts.append(current)
    return parts


def _checked(examples: Sequence[_Example]) -> list[tuple[list[int], list[int]]]:
    """Pull (input_ids, labels) lists out of the examples, refusing empty or mismatched ones."""
    if not examples:
        raise DataError(
            "cannot collate an empty batch",
            fix="plan_batches never yields one; check the caller's batch indices",
        )
    out = []
    for k, ex in enumerate(examples):
        ids, labels = list(ex.input_ids), list(ex.labels)
        if not ids:
            raise DataError(
                f"example {k} of the batch has no tokens",
                fix="drop empty rows before rendering (tuneloop data check)",
            )
        if len(ids) != len(labels):
            raise DataError(
                f"example {k} of the batch has {len(ids)} input_ids but {len(labels)} labels",
                fix="render examples with tuneloop.data.render so labels align with input_ids",
            )
        out.append((ids, labels))
    return out


def collate_packed(examples: Sequence[_Example], *, pad_to_multiple_of: int | None = None) -> dict:
    """Pack examples into one (1, T) row with per-document position_ids and cu_seqlens."""
    import torch

    docs = _checked(examples)
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    cu = [0]
    for doc_ids, doc_labels in docs:
        ids.extend(doc_ids)
        # The first label of each document is never a target: at a boundary it would be predicted
        # from the previous document's last token.
        labels.append(IGNORE_INDEX)
        labels.extend(doc_labels[1:])
        positions.extend(range(len(doc_ids)))
        cu.append(cu[-1] + len(doc_ids))
    n_real = len(ids)
    lengths = [len(d[0]) for d in docs]
    if pad_to_multiple_of and n_real % pad_to_multiple_of:
        # Padding is its own trailing "document": it restarts positions at 0, so it can attend
        # only to itself, and its labels are ignored. Kept for compile-friendly static shapes.
        pad = pad_to_multiple_of - n_real % pad_to_multiple_of
        ids.extend([0] * pad)
        labels.extend([IGNORE_INDEX] * pad)
        positions.extend(range(pad))
        cu.append(cu[-1] + pad)
        lengths.append(pad)
    labels_t = torch.tensor([labels], dtype=torch.long)
    return {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "labels": labels_t,
        "position_ids": torch.tensor([positions], dtype=torch.long),
        "cu_seqlens": torch.tensor(cu, dtype=torch.int32),
        "max_seqlen": max(lengths),
        "n_real_tokens": n_real,
        "n_trained_tokens": int((labels_t[0, 1:] != IGNORE_INDEX).sum()),
    }


def collate_padded(examples: Sequence[_Example], pad_token_id: int) -> dict:
    """Right-pad examples into (N, max_len) input_ids, labels (-100 on padding), attention_mask."""
    import torch

    docs = _checked(examples)
    width = max(len(d[0]) for d in docs)
    input_ids = torch.full((len(docs), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(docs), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(docs), width), dtype=torch.long)
    for row, (doc_ids, doc_labels) in enumerate(docs):
        n = len(doc_ids)
        input_ids[row, :n] = torch.tensor(doc_ids)
        labels[row, :n] = torch.tensor(doc_labels)
        attention_mask[row, :n] = 1
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": attention_mask,
        "n_real_tokens": int(attention_mask.sum()),
        "n_trained_tokens": int((labels[:, 1:] != IGNORE_INDEX).sum()),
    }


def packed_loss(model: Any, batch: dict, *, chunked: bool = True) -> tuple[Any, int]:
    """Summed next-token loss over a packed batch and the number of trained tokens.

    Forwards with ``attention_mask=None`` and ``use_cache=False`` (what makes transformers keep
    packed documents apart); passes cu_seqlens for varlen kernels, and computes the LM head only at
    positions that have a target (assistant tokens), which skips most of the vocab projection.
    ``chunked`` (default): the head + cross-entropy run a chunk of tokens at a time
    (`train/lm_loss.py`), so full-vocabulary logits for the batch never exist; same loss and
    gradients. Models whose head is not a plain linear layer take the unchunked path.
    """
    import torch

    from tuneloop.train.lm_loss import chunked_linear_cross_entropy, head_hidden_states, plain_head

    device = _model_device(model)
    input_ids = batch["input_ids"].to(device)
    labels = batch["labels"].to(device)
    targets = labels[0, 1:]
    keep = torch.nonzero(targets != IGNORE_INDEX).squeeze(-1)
    n_trained = int(keep.numel())
    cu = batch["cu_seqlens"].to(device)
    head = plain_head(model) if chunked else None
    with head_hidden_states(head) if head is not None else nullcontext():
        out = model(
            input_ids=input_ids,
            position_ids=batch["position_ids"].to(device),
            use_cache=False,
            logits_to_keep=keep,
            # The flash-attention convention; transformers' sdpa path ignores these.
            cu_seq_lens_q=cu,
            cu_seq_lens_k=cu,
            max_length_q=int(batch["max_seqlen"]),
            max_length_k=int(batch["max_seqlen"]),
        )
    if n_trained == 0:
        # Keep the graph connected so backward() works, but contribute nothing.
        return out.logits.float().sum() * 0.0, 0
    if head is not None:  # out.logits holds the head's input: hidden states at `keep`
        return chunked_linear_cross_entropy(out.logits[0], head.weight, targets[keep]), n_trained
    logits = out.logits[0].float()
    loss_sum = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
    return loss_sum, n_trained


def _model_device(model: Any):
    """The device of the model's first parameter (works for PEFT-wrapped models too)."""
    return next(model.parameters()).device


def kernel_dtype(query: Any) -> Any:
    """The dtype attention should run in: autocast's when it is on for the query's device.

    Under bf16 autocast the q/k projections come out in bf16 but the rotary embedding (cos/sin
    kept in fp32) promotes q and k back to fp32, while v stays bf16. transformers' sdpa call is
    autocast and casts all three down; a kernel called directly (varlen_attn) must do the same,
    or it sees fp32 and the H200 run fell back to one SDPA call per document: 0.44x TRL's
    tokens/s on the 135M shape (docs/benchmarks.md, "GPU").
    """
    import torch

    device = query.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return query.dtype


@functools.cache
def _keywords(kernel) -> frozenset[str]:
    """The keyword names ``kernel`` accepts (looked up once: attention runs per layer per step)."""
    return frozenset(inspect.signature(kernel).parameters)


def call_varlen(kernel, query, key, value, cu, max_len: int, *, scaling, groups: int):
    """Causal ``kernel`` (torch's ``varlen_attn``) over packed documents; (1, H, T, D) in, (T, H, D) out.

    The kernel's keywords changed between torch releases: 2.10 takes ``is_causal``, later ones a
    ``window_size`` ((-1, 0) is causal) and, later still, ``enable_gqa``. We pass what the installed
    version accepts and repeat the key/value heads ourselves where it has no GQA, so the same code
    runs on whatever torch a GPU machine has (the lent H200 had 2.11, this project pins 2.13).
    """
    import torch

    accepted = _keywords(kernel)
    options: dict[str, Any] = {"scale": scaling}
    if "window_size" in accepted:
        options["window_size"] = (-1, 0)
    else:
        options["is_causal"] = True
    if groups > 1:
        if "enable_gqa" in accepted:
            options["enable_gqa"] = True
        else:
            key = key.repeat_interleave(groups, dim=1)
            value = value.repeat_interleave(groups, dim=1)
    cu32 = cu.to(device=query.device, dtype=torch.int32)
    return kernel(
        query[0].transpose(0, 1),
        key[0].transpose(0, 1),
        value[0].transpose(0, 1),
        cu32,
        cu32,
        max_len,
        max_len,
        **options,
    )


def _varlen_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs
):
    """Causal attention per packed document from cu_seqlens; (B, H, T, D) in, (B, T, H, D) out."""
    import torch
    import torch.nn.functional as F

    cu = kwargs.get("cu_seq_lens_q")
    groups = getattr(module, "num_key_value_groups", 1)
    # A packed row (batch 1 + cu_seqlens) needs no mask: per-document causal attention is exactly
    # the block-causal mask transformers derives from the same position_ids.
    if cu is None or query.shape[0] != 1:
        # Not a packed batch (generation, padded eval): behave exactly like transformers' sdpa.
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    dropout = dropout if module.training else 0.0
    if query.is_cuda and dropout == 0.0:
        try:
            from torch.nn.attention.varlen import varlen_attn
        except ImportError:
            varlen_attn = None
        dtype = kernel_dtype(query)
        if varlen_attn is not None and dtype in (torch.float16, torch.bfloat16):
            out = call_varlen(
                varlen_attn,
                query.to(dtype),
                key.to(dtype),
                value.to(dtype),
                cu,
                int(kwargs.get("max_length_q") or (cu[1:] - cu[:-1]).max()),
                scaling=scaling,
                groups=groups,
            )
            return out.unsqueeze(0), None
    bounds = cu.tolist()
    pieces = []
    for start, end in itertools.pairwise(bounds):
        pieces.append(
            F.scaled_dot_product_attention(
                query[:, :, start:end],
                key[:, :, start:end],
                value[:, :, start:end],
                dropout_p=dropout,
                is_causal=end - start > 1,
                scale=scaling,
                enable_gqa=groups > 1,
            )
        )
    out = torch.cat(pieces, dim=2) if len(pieces) > 1 else pieces[0]
    return out.transpose(1, 2).contiguous(), None


def register_varlen_attention() -> str:
    """Register the per-document attention with transformers under ``"tuneloop_varlen"``."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(VARLEN_ATTENTION, _varlen_attention)
    # Without a mask function transformers would drop the padding mask of ordinary (padded,
    # generation) calls for an unknown attention name; build the same mask sdpa gets.
    AttentionMaskInterface.register(VARLEN_ATTENTION, sdpa_mask)
    return VARLEN_ATTENTION


def enable_packed_attention(model: Any, implementation: str | None = None) -> str:
    """Switch ``model`` to the attention that is fastest for packed rows; returns its name.

    Default: ``flash_attention_2`` on CUDA when the flash-attn package is installed, otherwise
    ``"tuneloop_varlen"`` (per-document attention: 1.38x the tokens/s of transformers' sdpa
    block-mask path on the 2-core CPU; docs/benchmarks.md). ``"sdpa"`` keeps transformers' path.
    """
    if implementation is None:
        implementation = VARLEN_ATTENTION
        if _model_device(model).type == "cuda":
            try:
                import flash_attn  # noqa: F401

                implementation = "flash_attention_2"
            except ImportError:
                pass
    if implementation == VARLEN_ATTENTION:
        register_varlen_attention()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        base.set_attn_implementation(implementation)
    except (ValueError, ImportError) as exc:
        raise ModelError(
            f"cannot use attention {implementation!r}: {exc}",
            fix="pass implementation='sdpa' (always available)",
        ) from exc
    return implementation
