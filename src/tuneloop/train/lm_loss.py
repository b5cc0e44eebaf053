"""LM head + cross-entropy in chunks of tokens: never the full (tokens x vocabulary) logits.

For a 135M model with a 49k vocabulary, the logits of a packed batch and their gradient are the
largest tensors of a step (8k tokens x 49k x 4 bytes = 1.6 GB, twice). Here the head is applied to
`_CHUNK_ELEMENTS / vocab` tokens at a time: forward computes each chunk's logits, log-sum-exp and
loss AND its gradients wrt the hidden states and the head weight (softmax - one-hot is known right
then), so backward only scales them; no chunk is recomputed and at most one chunk of logits lives
at a time. Same loss and gradients as `cross_entropy(hidden @ W.T, targets, reduction="sum")`
(tests/train/test_chunked_loss.py), under autocast too (the matmuls run in the autocast dtype,
the softmax in fp32, as the unchunked path does with `logits.float()`).

`head_hidden_states` makes a causal-LM forward return the hidden states the head would see instead
of the logits, so callers keep using the model's own forward (DDP hooks, PEFT wrappers, masks).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_CHUNK_ELEMENTS = 1 << 25  # fp32 logits per chunk: 128 MiB
_FLAG = "_tuneloop_return_hidden"
# Config fields that post-process logits (softcapping, scaling): the plain head would be wrong.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling",
                     "output_multiplier_scale")


def _unwrapped(model: Any) -> Any:
    model = getattr(model, "module", model)  # DDP
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT


def plain_head(model: Any) -> Any | None:
    """The model's output projection if it is a bias-free nn.Linear with untransformed logits."""
    import torch

    base = _unwrapped(model)
    get = getattr(base, "get_output_embeddings", None)
    head = get() if get is not None else None
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None  # absent, LoRA-wrapped, quantised or with a bias: use the model's own head
    cfg = getattr(base, "config", None)
    if cfg is not None and any(getattr(cfg, k, None) not in (None, 1, 1.0)
                               for k in _LOGIT_TRANSFORMS):
        return None
    return head


def _install(head: Any) -> None:
    """Give `head` a forward that returns its input when the flag is set (installed once, so a
    compiled model sees one stable function and only a flag that changes)."""
    if getattr(head, "_tuneloop_installed", False):
        return
    # A bound method, not a closure: a deep copy of the model (a reference model, EMA) gets a
    # forward bound to its own copy of the head.
    head.forward = types.MethodType(_flagged_forward, head)
    head._tuneloop_installed = True
    setattr(head, _FLAG, False)


def _flagged_forward(self: Any, x: Any) -> Any:
    import torch

    return x if getattr(self, _FLAG, False) else torch.nn.Linear.forward(self, x)


@contextmanager
def head_hidden_states(head: Any) -> Iterator[None]:
    """Within the block the model's `logits` output is the hidden states fed to `head`."""
    _install(head)
    setattr(head, _FLAG, True)
    try:
        yield
    finally:
        setattr(head, _FLAG, False)


def _compute_dtype(device_type: str, default: Any) -> Any:
    import torch

    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return default


def chunk_rows(vocab: int) -> int:
    """Tokens per chunk: _CHUNK_ELEMENTS logits at this vocabulary size."""
    return max(1, _CHUNK_ELEMENTS // max(vocab, 1))


def _loss_only(hidden: Any, weight: Any, targets: Any, dtype: Any) -> Any:
    import torch

    w = weight.to(dtype)
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    step = chunk_rows(weight.shape[0])
    for s in range(0, hidden.shape[0], step):
        logits = (hidden[s:s + step].to(dtype) @ w.T).float()
        t = targets[s:s + step]
        total += (torch.logsumexp(logits, -1) - logits.gather(1, t[:, None])[:, 0]).sum()
    return total


@functools.cache
def _function() -> Any:
    """The autograd Function, built on first use (torch is imported lazily)."""
    import torch

    class ChunkedLinearCE(torch.autograd.Function):
        """sum_i CE(hidden_i @ W.T, target_i); gradients computed chunk by chunk in forward."""

        @staticmethod
        def forward(ctx, hidden, weight, targets, dtype, need_h, need_w):
            with torch.autocast(hidden.device.type, enabled=False):
                w = weight.to(dtype)
                grad_h = torch.empty(hidden.shape, dtype=torch.float32,
                                     device=hidden.device) if need_h else None
                # Written by the first chunk (no zero fill of a vocab x hidden buffer first);
                # with no rows there is no first chunk, so it must start at zero.
                alloc = torch.empty if hidden.shape[0] else torch.zeros
                grad_w = alloc(weight.shape, dtype=torch.float32,
                               device=weight.device) if need_w else None
                total = torch.zeros((), dtype=torch.float32, device=hidden.device)
                step = chunk_rows(weight.shape[0])
                for s in range(0, hidden.shape[0], step):
                    h = hidden[s:s + step].to(dtype)
                    t = targets[s:s + step]
                    logits = (h @ w.T).float()
                    lse = torch.logsumexp(logits, -1)
                    total += (lse - logits.gather(1, t[:, None])[:, 0]).sum()
                    # d loss / d logits = softmax - one_hot, built in place over the logits
                    probs = logits.sub_(lse[:, None]).exp_()
                    probs[torch.arange(t.shape[0], device=t.device), t] -= 1.0
                    g = probs.to(dtype)
                    if need_h:
                        grad_h[s:s + step] = (g @ w).float()
                    if need_w:
                        if dtype == torch.float32:
                            if s == 0:
                                torch.mm(g.T, h, out=grad_w)
                            else:
                                grad_w.addmm_(g.T, h)
                        elif s == 0:
                            grad_w.copy_(g.T @ h)
                        else:
                            grad_w += (g.T @ h).float()
            ctx.save_for_backward(*(x for x in (grad_h, grad_w) if x is not None))
            ctx.need = (need_h, need_w)
            ctx.dtypes = (hidden.dtype, weight.dtype)
            return total

        @staticmethod
        def backward(ctx, grad_out):
            saved = list(ctx.saved_tensors)
            need_h, need_w = ctx.need
            # Scaled in place, so no new vocab x hidden tensor is made (a second, retain_graph
            # backward is refused by autograd's version check on the saved buffers).
            gh = saved.pop(0).mul_(grad_out).to(ctx.dtypes[0]) if need_h else None
            gw = saved.pop(0).mul_(grad_out).to(ctx.dtypes[1]) if need_w else None
            return gh, gw, None, None, None, None

    return ChunkedLinearCE


def chunked_linear_cross_entropy(hidden: Any, weight: Any, targets: Any) -> Any:
    """Summed CE of `hidden (N, H) @ weight.T (V, H)` against `targets (N,)` (no -100 here:
    callers pass only trained positions), chunked over N; fp32 scalar."""
    import torch

    dtype = _compute_dtype(hidden.device.type, hidden.dtype)
    need_h = torch.is_grad_enabled() and hidden.requires_grad
    need_w = torch.is_grad_enabled() and weight.requires_grad
    if not (need_h or need_w):
        return _loss_only(hidden, weight, targets, dtype)
    return _function().apply(hidden, weight, targets, dtype, need_h, need_w)
