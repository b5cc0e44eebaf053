"""Direct Preference Optimisation on (prompt, chosen, rejected) pairs; the units are pairs.

A pair is rendered twice with the model's template (prompt + chosen, prompt + rejected) and only
the final answer's tokens count: a sequence's log-prob is the sum of its answer tokens' log-probs
(through the end-of-turn token). A micro-batch of N pairs is ONE padding-free packed row of 2N
documents with per-document positions (`train/collate.py`), so chosen and rejected never attend
to each other and no padding is computed.

The reference model:
- LoRA: the same model with the adapter switched off (`disable_adapter()`, no grad): no second
  copy in memory, and the reference is exactly the base the adapter was put on.
- full fine-tuning: the weights change, so the reference log-probs of every pair are computed
  once in `setup()` (before the optimizer and any resume, eval mode, no grad) and cached in
  RUN/dpo_reference.safetensors, keyed by the data fingerprint and model; a resume reuses them.

Losses, with x = (pi_c - pi_r) - (ref_c - ref_r) per pair (log-probs summed over answer tokens):
- sigmoid: -(1 - e) log s(beta x) - e log s(-beta x)          (e = label_smoothing; DPO, cDPO)
- ipo:     (x_avg - 1 / (2 beta))^2, x_avg from per-token mean log-probs (as TRL does)
- hinge:   max(0, 1 - beta x)
plus `sft_weight` x the chosen answer's mean token NLL. Rewards are beta (pi - ref).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from tuneloop.errors import TrainingError
from tuneloop.train.objectives.base import (
    Batch,
    EvalResult,
    LossOutput,
    ObjectiveContext,
    PreparedData,
)
from tuneloop.train.objectives.sharded_eval import sharded_eval_sums

IGNORE_INDEX = -100
REFERENCE_CACHE = "dpo_reference.safetensors"
METRICS = ("reward_margin", "reward_accuracy", "logps_chosen", "logps_rejected")


@dataclass
class Answer:
    """One rendered prompt + answer: ids and labels (-100 everywhere but the final answer)."""

    input_ids: list[int]
    labels: list[int]


@dataclass
class PairExample:
    """A rendered pair, plus its reference log-probs when they were precomputed (full FT)."""

    chosen: Answer
    rejected: Answer
    ref_chosen: float | None = None
    ref_rejected: float | None = None

    # What the data fingerprint hashes (train.fingerprint.rendered_hash): both sides, in order.
    @property
    def input_ids(self) -> list[int]:
        return [*self.chosen.input_ids, -1, *self.rejected.input_ids]

    @property
    def labels(self) -> list[int]:
        return [*self.chosen.labels, -1, *self.rejected.labels]


# ------------------------------------------------------------------------------------- data


def final_answer_only(labels: list[int]) -> list[int]:
    """Keep the labels of the last trained run (the final answer); mask earlier turns."""
    end = len(labels)
    while end > 0 and labels[end - 1] == IGNORE_INDEX:
        end -= 1
    start = end
    while start > 0 and labels[start - 1] != IGNORE_INDEX:
        start -= 1
    return [IGNORE_INDEX] * start + labels[start:end] + [IGNORE_INDEX] * (len(labels) - end)


def render_pair(renderer: Any, record: Any) -> tuple[PairExample | None, str | None]:
    """Render a preference Record; (None, reason) if either side cannot be trained on."""
    from tuneloop.data.records import Record

    prompt = list(record.messages[:-1])
    sides = []
    for answer in (record.messages[-1]["content"], record.rejected):
        res = renderer.render(Record(messages=[*prompt, {"role": "assistant", "content": answer}],
                                     source=record.source, line=record.line))
        if res.example is None:
            return None, res.reason or "no_trainable_tokens"
        labels = final_answer_only(list(res.example.labels))
        if all(label == IGNORE_INDEX for label in labels[1:]):
            return None, "no_trainable_tokens"
        sides.append(Answer(list(res.example.input_ids), labels))
    return PairExample(sides[0], sides[1]), None


def _render_pairs(renderer: Any, records: list[Any], dropped: Any) -> list[PairExample]:
    out = []
    for record in records:
        pair, reason = render_pair(renderer, record)
        if pair is None:
            dropped[reason] += 1  # counted and reported (R13), never silently lost
        else:
            out.append(pair)
    return out


def _load_pairs(paths: list[str], data: Any) -> list[Any]:
    from tuneloop.data.check import load_clean_records

    records = load_clean_records(paths, format=data.format, field_map=data.field_map)
    pairs = [r for r in records if r.rejected is not None]
    if len(pairs) != len(records):
        first = next(r for r in records if r.rejected is None)
        raise TrainingError(
            f"objective dpo needs preference pairs, but {len(records) - len(pairs)} rows are "
            "not pairs", where=first.where,
            fix="give rows with prompt, chosen and rejected (the arena export format), or use "
                "objective: sft for chat rows")
    return pairs


def prepare_pairs(config: Any, renderer: Any) -> PreparedData:
    """Load, validate, split and render the configured preference rows (drops counted, R13)."""
    from collections import Counter

    from tuneloop.data import split as split_mod
    from tuneloop.train.fingerprint import data_fingerprint

    data = config.data
    train_records = _load_pairs(list(data.train), data)
    rows = Counter(r.source for r in train_records)
    if data.eval:
        eval_records = _load_pairs(list(data.eval), data)
        rows.update(r.source for r in eval_records)
    elif data.eval_fraction > 0 and len(train_records) > 1:
        result = split_mod.split_records(train_records, test_size=data.eval_fraction,
                                         seed=data.split_seed)
        train_records, eval_records = list(result.train), list(result.test)
    else:
        eval_records = []
    dropped: Counter = Counter()
    eval_dropped: Counter = Counter()
    train = _render_pairs(renderer, train_records, dropped)
    evals = _render_pairs(renderer, eval_records, eval_dropped)
    if not train:
        reasons = ", ".join(f"{k}: {v}" for k, v in dropped.items()) or "no rows"
        raise TrainingError(f"no preference pair remains after rendering ({reasons})",
                            where=", ".join(data.train),
                            fix="raise data.max_length or fix the rows (`tuneloop data check`)")
    dropped_all = {f"train.{k}": v for k, v in dropped.items()}
    dropped_all.update({f"eval.{k}": v for k, v in eval_dropped.items()})
    fp = data_fingerprint([*data.train, *data.eval], rows=dict(rows), train_examples=train,
                          eval_examples=evals, dropped=dropped_all)
    return PreparedData(train=train, eval=evals, dropped=dropped_all, fingerprint=fp,
                        format="chat")


# ------------------------------------------------------------------------------- numerics


def collate_pairs(pairs: list[PairExample]) -> dict:
    """N pairs → one packed (1, T) row of 2N documents: chosen_0, rejected_0, chosen_1, ...

    Adds `target_doc` (the document of each next-token target) and, when every pair has them,
    the precomputed reference log-probs `ref` (N, 2).
    """
    import torch

    from tuneloop.train.collate import collate_packed

    docs = [side for p in pairs for side in (p.chosen, p.rejected)]
    packed = collate_packed(docs)
    doc = torch.zeros(packed["input_ids"].shape[1], dtype=torch.long)
    cu = packed["cu_seqlens"].tolist()
    for k in range(len(docs)):
        doc[cu[k]:cu[k + 1]] = k
    packed["target_doc"] = doc[1:]  # target t+1 is predicted at position t
    packed["n_pairs"] = len(pairs)
    if all(p.ref_chosen is not None for p in pairs):
        packed["ref"] = torch.tensor([[p.ref_chosen, p.ref_rejected] for p in pairs],
                                     dtype=torch.float32)
    return packed


def sequence_logps(model: Any, packed: dict) -> tuple[Any, Any]:
    """Per-document summed answer log-probs (2N,) and answer token counts (2N,), chosen first.

    Returned as (N, 2) tensors: column 0 chosen, column 1 rejected. The LM head runs only at
    answer positions (`logits_to_keep`), like the SFT loss.
    """
    import torch

    device = next(model.parameters()).device
    labels = packed["labels"].to(device)
    targets = labels[0, 1:]
    keep = torch.nonzero(targets != IGNORE_INDEX).squeeze(-1)
    cu = packed["cu_seqlens"].to(device)
    out = model(input_ids=packed["input_ids"].to(device),
                position_ids=packed["position_ids"].to(device), use_cache=False,
                logits_to_keep=keep, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                max_length_q=int(packed["max_seqlen"]), max_length_k=int(packed["max_seqlen"]))
    logits = out.logits[0].float()
    token_logps = -torch.nn.functional.cross_entropy(logits, targets[keep], reduction="none")
    doc = packed["target_doc"].to(device)[keep]
    n_docs = 2 * int(packed["n_pairs"])
    logps = torch.zeros(n_docs, dtype=token_logps.dtype, device=device).index_add(
        0, doc, token_logps)
    counts = torch.zeros(n_docs, dtype=token_logps.dtype, device=device).index_add(
        0, doc, torch.ones_like(token_logps))
    return logps.view(-1, 2), counts.view(-1, 2)


def dpo_losses(policy: Any, reference: Any, counts: Any, *, beta: float, loss: str = "sigmoid",
               label_smoothing: float = 0.0) -> tuple[Any, Any, Any]:
    """Per-pair losses and chosen/rejected rewards from (N, 2) summed log-probs and counts."""
    import torch.nn.functional as F

    ratios = policy - reference  # (N, 2): log pi/ref of chosen, rejected
    x = ratios[:, 0] - ratios[:, 1]
    if loss == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * x) \
            - label_smoothing * F.logsigmoid(-beta * x)
    elif loss == "ipo":
        avg = ratios / counts.clamp_min(1.0)
        losses = (avg[:, 0] - avg[:, 1] - 1 / (2 * beta)) ** 2
    elif loss == "hinge":
        losses = (1 - beta * x).clamp_min(0.0)
    else:
        raise ValueError(f"unknown DPO loss {loss!r}")
    rewards = beta * ratios.detach()
    return losses, rewards[:, 0], rewards[:, 1]


# -------------------------------------------------------------------------------- objective


class DPOObjective:
    """DPO (sigmoid/ipo/hinge) on packed pairs; reference = adapter off (LoRA) or cached."""

    name = "dpo"

    def __init__(self, settings: Any, method: str = "lora"):
        self.settings = settings
        self.method = method
        self.ctx: ObjectiveContext | None = None

    def prepare_data(self, config: Any, renderer: Any) -> PreparedData:
        """Load, split and render `config.data` as preference pairs."""
        return prepare_pairs(config, renderer)

    def lengths(self, examples: list[Any]) -> list[int]:
        """Tokens per pair (both sides: they share one packed row)."""
        return [len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in examples]

    def setup(self, model: Any, data: PreparedData, ctx: ObjectiveContext) -> None:
        """Packed attention; with full fine-tuning, the reference log-probs (cached, R1)."""
        from tuneloop.train.collate import enable_packed_attention

        enable_packed_attention(model)
        self.ctx = ctx
        if self.method == "full":
            self._precompute_reference(model, data, ctx)

    def collate(self, examples: list[Any]) -> Batch:
        """One packed row of 2N documents; units: pairs."""
        packed = collate_pairs(examples)
        return Batch(inputs=packed, n_units=len(examples),
                     n_real_tokens=int(packed["n_real_tokens"]),
                     n_positions=int(packed["input_ids"].numel()))

    def loss(self, model: Any, batch: Batch) -> LossOutput:
        """Summed DPO loss over the pairs, plus reward/log-prob sums for the train rows."""
        packed = batch.inputs
        reference = self._reference(model, packed)
        policy, counts = sequence_logps(model, packed)
        return LossOutput(*self._sums(policy, reference, counts))

    def evaluate(self, model: Any, examples: list[Any], *, batch_size: int, accelerator: Any,
                 progress: Any) -> EvalResult:
        """Held-out DPO loss, reward margin/accuracy and log-probs (sharded over processes)."""
        import torch

        def sums_of(model: Any, chunk: list[Any], device: Any) -> Any:
            packed = collate_pairs(chunk)
            reference = self._reference(model, packed)
            policy, counts = sequence_logps(model, packed)
            loss_sum, metrics = self._sums(policy, reference, counts)
            return torch.stack([loss_sum.double(),
                                torch.tensor(float(len(chunk)), dtype=torch.float64,
                                             device=device),
                                *(metrics[m].double() for m in METRICS)])

        totals = sharded_eval_sums(model, examples, batch_size=batch_size,
                                   accelerator=accelerator, progress=progress,
                                   width=2 + len(METRICS), sums_of=sums_of)
        loss_sum, n, *sums = totals
        mean = (lambda s: s / n) if n else (lambda s: float("nan"))
        return EvalResult(loss=mean(loss_sum),
                          metrics={**{m: mean(s) for m, s in zip(METRICS, sums, strict=True)},
                                   "eval_pairs": int(n)})

    # -- internals -------------------------------------------------------------------------

    def _sums(self, policy: Any, reference: Any, counts: Any) -> tuple[Any, dict[str, Any]]:
        s = self.settings
        losses, chosen_r, rejected_r = dpo_losses(policy, reference, counts, beta=s.beta,
                                                  loss=s.loss,
                                                  label_smoothing=s.label_smoothing)
        metrics = {"reward_margin": (chosen_r - rejected_r).sum(),
                   "reward_accuracy": (chosen_r > rejected_r).float().sum(),
                   "logps_chosen": policy[:, 0].detach().sum(),
                   "logps_rejected": policy[:, 1].detach().sum()}
        total = losses.sum()
        if s.sft_weight:
            nll = (-policy[:, 0] / counts[:, 0].clamp_min(1.0)).sum()
            metrics["sft_loss"] = nll.detach()
            total = total + s.sft_weight * nll
        return total, metrics

    def _reference(self, model: Any, packed: dict) -> Any:
        """(N, 2) reference log-probs: precomputed (full FT) or the adapter switched off."""
        import torch

        if "ref" in packed:
            return packed["ref"].to(next(model.parameters()).device)
        acc = self.ctx.accelerator if self.ctx is not None else None
        base = acc.unwrap_model(model) if acc is not None else model
        if not hasattr(base, "disable_adapter"):
            raise TrainingError("DPO has no reference log-probs for this batch",
                                fix="use method: lora, or method: full (precomputed reference)")
        # The module itself, not a DDP wrapper: the reference pass takes no part in the
        # gradient sync.
        with torch.no_grad(), base.disable_adapter():
            logps, _ = sequence_logps(base, packed)
        return logps

    def _precompute_reference(self, model: Any, data: PreparedData,
                              ctx: ObjectiveContext) -> None:
        """Reference log-probs of every pair with the untrained weights; cached in the run dir."""
        acc = ctx.accelerator
        path = ctx.run_dir / REFERENCE_CACHE
        key = json.dumps({"data": data.fingerprint.get("id"), "model": ctx.config.model,
                          "template": ctx.config.data.template,
                          "max_length": ctx.config.data.max_length}, sort_keys=True)
        # Only the main process decides whether to compute, and every process meets the barrier
        # either way: a rank that looked for the cache itself could find the file the main
        # process had just written, skip the barrier, and leave the main process waiting there
        # forever (seen under load with two processes).
        if acc.is_main_process and _read_cache(path, key) is None:
            batch = ctx.config.eval.batch_size
            tensors = {"train": _reference_logps(model, data.train, batch, acc),
                       "eval": _reference_logps(model, data.eval, batch, acc)}
            _write_cache(path, key, tensors)
        acc.wait_for_everyone()
        cached = _read_cache(path, key)
        if cached is None:
            raise TrainingError("the reference log-probs cache could not be read back",
                                where=str(path), fix="check the run directory is writable")
        for name, examples in (("train", data.train), ("eval", data.eval)):
            values = cached[name].tolist()
            if len(values) != len(examples):
                raise TrainingError("the reference log-probs cache does not match the data",
                                    where=str(path), fix="delete the file; it is recomputed")
            for pair, (rc, rr) in zip(examples, values, strict=True):
                pair.ref_chosen, pair.ref_rejected = rc, rr


def _reference_logps(model: Any, examples: list[PairExample], batch_size: int,
                     accelerator: Any) -> Any:
    import torch

    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad(), accelerator.autocast():
        for i in range(0, len(examples), batch_size):
            logps, _ = sequence_logps(model, collate_pairs(examples[i:i + batch_size]))
            out.append(logps.float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros((0, 2))


def _read_cache(path: Any, key: str) -> dict | None:
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            if (fh.metadata() or {}).get("key") != key:
                return None  # other data or model: recompute
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    except Exception:  # noqa: BLE001 - a torn or foreign file is recomputed, never trusted
        return None
    if set(tensors) != {"train", "eval"} or not all(
            math.isfinite(v) for t in tensors.values() for v in t.flatten().tolist()):
        return None
    return tensors


def _write_cache(path: Any, key: str, tensors: dict) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"key": key})
    tmp.replace(path)  # never a half-written cache under the real name
