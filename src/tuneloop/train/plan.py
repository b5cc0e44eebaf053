"""Before training: how much memory a config needs, how long an epoch takes, what to change.

The memory model is per process and counts, in bytes:

- weights: every parameter at its dtype (fp32 on CPU; bf16/fp16 halves it);
- grads + optimizer: the trainable parameters' gradients and AdamW's two fp32 moments
  (LoRA: only the adapters, `r * (in + out)` per adapted linear);
- activations: what autograd saves for backward, per token per layer (a Llama block saves its
  norm inputs/outputs, q/k/v, attention output and the MLP's gate/up/act/product — about
  `8h + 4i + 2kv` numbers per token), times tokens per micro-batch (batch_size × max_length,
  the packed upper bound) and layers; with gradient checkpointing only each layer's input is
  kept plus one layer recomputed during backward;
- logits: the LM head's (tokens × vocabulary) fp32 logits, their log-softmax and gradient —
  unless the loss is computed in chunks of tokens (`tuneloop.train.lm_loss`, when present),
  then one chunk's worth;
- runtime: the interpreter + torch + transformers already resident (measured, not assumed).

`measure_components` measures the same terms on a real model (parameter/gradient/optimizer bytes
exactly; activations with autograd's saved-tensor hooks), which is what the test compares the
estimate with. Time per epoch comes from a short measured probe: a few real training steps.
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneloop import allocator
from tuneloop.errors import ModelError
from tuneloop.train.config import TrainConfig, token_budget

GiB = 1024 ** 3
LENGTHS_MAX_BYTES = 20 * 1024 ** 2  # read real example lengths only for data up to this size
ADAM_STATES = 2  # exp_avg, exp_avg_sq (fp32)
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class Shape:
    """What the memory model needs to know about a decoder-only model."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    tied: bool
    params: int  # total parameters

    @property
    def kv_dim(self) -> int:
        """Width of the k (and v) projection."""
        return self.hidden // self.heads * self.kv_heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear in one block."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


@dataclass
class Memory:
    """Peak bytes per process, by term."""

    runtime: int
    weights: int
    grads: int
    optimizer: int
    activations: int
    logits: int
    checkpointing: bool

    @property
    def total(self) -> int:
        """Sum of the terms."""
        return (self.runtime + self.weights + self.grads + self.optimizer + self.activations
                + self.logits)

    def to_json(self) -> dict[str, Any]:
        """Plain dict with the total."""
        return {**asdict(self), "total": self.total}


@dataclass
class Probe:
    """A few measured training steps."""

    steps: int
    seconds_per_step: float
    steps_per_epoch: int
    epoch_seconds: float
    peak_rss: int


@dataclass
class Plan:
    """The estimate `tuneloop plan` prints and `train` prints at start."""

    model: str
    method: str
    device: str
    params: int
    trainable: int
    batch_size: int
    tokens_per_micro_batch: int  # the largest packed micro-batch (after the token budget)
    batch_tokens: int  # the largest batch of the plan before the budget cuts it
    logit_chunk_tokens: int | None
    memory: dict[str, Memory]  # "checkpointing off" / "checkpointing on"
    configured_checkpointing: bool
    available: int | None  # bytes of memory this device has free
    # The malloc a `tuneloop train` process gets here (tuneloop/allocator.py): the estimate counts
    # live memory, which is what jemalloc's RSS follows; glibc's can sit far above it.
    allocator: str = "jemalloc"
    probe: Probe | None = None
    advice: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain dict (`tuneloop plan --json`)."""
        data = asdict(self)
        data["memory"] = {k: m.to_json() for k, m in self.memory.items()}
        return data


def shape_of(model_config: Any) -> Shape:
    """A Shape from a transformers config (Llama-like decoder)."""
    c = model_config
    h, i, n = c.hidden_size, c.intermediate_size, c.num_hidden_layers
    heads = c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    tied = bool(getattr(c, "tie_word_embeddings", False))
    shape = Shape(vocab=c.vocab_size, hidden=h, intermediate=i, layers=n, heads=heads,
                  kv_heads=kv_heads, tied=tied, params=0)
    block = sum(a * b for a, b in shape.linear_shapes().values()) + 2 * h
    shape.params = c.vocab_size * h * (1 if tied else 2) + n * block + h
    return shape


def trainable_params(shape: Shape, config: TrainConfig) -> int:
    """Parameters the optimizer updates: all (full) or the LoRA adapters."""
    if config.method == "full":
        return shape.params
    targets = config.lora.target_modules
    names = LINEAR_NAMES if targets == "all-linear" else [t for t in targets if t in LINEAR_NAMES]
    r = config.lora.r
    return shape.layers * sum(r * (a + b) for name, (a, b) in shape.linear_shapes().items()
                              if name in names)


def logit_chunk_tokens(tokens: int, vocab: int) -> int:
    """Tokens per chunk of the chunked LM-head loss (train/lm_loss.py)."""
    from tuneloop.train.lm_loss import chunk_rows

    return max(1, min(tokens, chunk_rows(vocab)))


def activation_floats_per_token_layer(shape: Shape, config: TrainConfig) -> int:
    """Numbers autograd saves per token in one block (see the module doc)."""
    h, i, kv = shape.hidden, shape.intermediate, shape.kv_dim
    floats = 8 * h + 4 * i + 2 * kv
    if config.method == "lora":  # each adapted linear also keeps its r-wide A output
        floats += config.lora.r * 7
    return floats


def batch_tokens(config: TrainConfig, lengths: list[int] | None = None) -> tuple[int, int]:
    """(tokens of the largest batch, tokens of the longest example): the batch_size longest
    rendered examples (batch_size × max_length when the lengths are unknown)."""
    t = config.training
    if lengths:
        longest = sorted(lengths, reverse=True)
        return sum(longest[: t.batch_size]), longest[0]
    return t.batch_size * config.data.max_length, config.data.max_length


def micro_batch_tokens(config: TrainConfig, lengths: list[int] | None = None,
                       device_type: str = "cpu") -> int:
    """Tokens in the largest packed micro-batch: the largest batch cut by the token budget (an
    example longer than the budget still runs whole)."""
    tokens, single = batch_tokens(config, lengths)
    budget = token_budget(config.training, device_type)
    return min(tokens, max(budget, single)) if budget else tokens


def data_lengths(config: TrainConfig) -> list[int] | None:
    """Rendered lengths of the training examples (None if the data cannot be read here)."""
    from tuneloop.data.render import Renderer
    from tuneloop.errors import TuneloopError
    from tuneloop.models import load_tokenizer
    from tuneloop.train.objectives.sft_data import prepare_data

    if config.objective != "sft":
        return None
    size = sum(Path(f).stat().st_size for f in config.data.train if Path(f).is_file())
    if size > LENGTHS_MAX_BYTES:  # rendering everything twice is not worth a tighter bound
        return None
    try:
        renderer = Renderer(load_tokenizer(config.model), template=config.data.template,
                            max_length=config.data.max_length,
                            train_on_prompt=config.data.train_on_prompt)
        return [len(ex.input_ids) for ex in prepare_data(config.data, renderer).train]
    except TuneloopError:
        return None


def estimate_memory(shape: Shape, config: TrainConfig, *, checkpointing: bool,
                    runtime: int = 0, dtype_bytes: int = 4,
                    chunk_tokens: int | None | str = "auto",
                    tokens: int | None = None) -> Memory:
    """Peak bytes per process for `config` on a model of `shape` (module doc); `tokens` is the
    largest micro-batch (default: batch_size × max_length)."""
    if tokens is None:
        tokens = micro_batch_tokens(config)
    trainable = trainable_params(shape, config)
    per_layer = activation_floats_per_token_layer(shape, config) * tokens * 4
    if checkpointing:
        activations = shape.layers * shape.hidden * tokens * 4 + per_layer
    else:
        activations = shape.layers * per_layer
    activations += 2 * shape.hidden * tokens * 4  # embeddings out + final norm
    if chunk_tokens == "auto":
        chunk_tokens = logit_chunk_tokens(tokens, shape.vocab)
    # unchunked: logits, their fp32 log-softmax (saved) and its gradient live at once
    logits = (3 * tokens if chunk_tokens is None else 2 * chunk_tokens) * shape.vocab * 4
    adapters = trainable * 4 if config.method == "lora" else 0  # fp32 adapters beside the base
    return Memory(runtime=runtime, weights=shape.params * dtype_bytes + adapters,
                  grads=trainable * 4,
                  optimizer=ADAM_STATES * trainable * 4, activations=activations,
                  logits=logits, checkpointing=checkpointing)


def current_rss() -> int:
    """Resident bytes of this process now (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def peak_rss() -> int:
    """Peak resident bytes of this process so far."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def available_memory() -> tuple[str, int | None]:
    """(device, free bytes): the GPU's free memory, else the machine's available RAM."""
    import torch

    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return torch.cuda.get_device_name(0), int(free)
    try:
        with open("/proc/meminfo") as fh:
            info = dict(line.split(":", 1) for line in fh)
        return f"CPU ({os.cpu_count()} cores)", int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return f"CPU ({os.cpu_count()} cores)", None


def model_shape(config: TrainConfig) -> Shape:
    """The Shape of the config's model (reads its config.json; no weights are loaded)."""
    from transformers import AutoConfig

    from tuneloop.models import resolve_model_ref

    resolved = resolve_model_ref(config.model)
    try:
        model_config = AutoConfig.from_pretrained(resolved.weights)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the model's config: {exc}", where=str(resolved.weights),
                         fix="pass a local model directory, a run directory or a reachable "
                         "hub id") from None
    try:
        return shape_of(model_config)
    except AttributeError as exc:
        raise ModelError(f"the plan knows decoder-only (Llama-like) models only: {exc}",
                         where=str(resolved.weights), fix="train without the plan's estimate"
                         ) from None


def advise(plan: Plan) -> list[str]:
    """Recommendations: LoRA vs full, checkpointing, batch size for the memory at hand."""
    off, on = plan.memory["checkpointing off"], plan.memory["checkpointing on"]
    out: list[str] = []
    if plan.allocator == "system" and plan.device.startswith("CPU"):
        out.append("without jemalloc the peak can be well above this estimate (the system "
                   "malloc keeps freed activations in fragments: +45 % measured on 1540-token "
                   "micro-batches); install libjemalloc2 and tuneloop uses it")
    avail = plan.available
    if avail is None:
        return [*out, "free memory unknown on this device: compare the totals with what you have"]
    if off.total <= 0.8 * avail:
        out.append(f"fits without gradient checkpointing ({off.total / GiB:.2f} GiB of "
                   f"{avail / GiB:.1f} GiB free): leave it off (it recomputes activations)")
    elif on.total <= 0.8 * avail:
        out.append("turn gradient checkpointing on (training.gradient_checkpointing: on): "
                   f"{on.total / GiB:.2f} GiB instead of {off.total / GiB:.2f} GiB")
    else:
        out.append(f"does not fit: {on.total / GiB:.2f} GiB even with checkpointing, "
                   f"{avail / GiB:.1f} GiB free; lower training.batch_size or data.max_length")
        if plan.method == "full":
            out.append("or use method: lora (no full-model gradients or Adam moments)")
    if plan.method == "full" and off.grads + off.optimizer > 0.25 * avail:
        out.append("full fine-tuning spends most memory on gradients and Adam moments; "
                   "method: lora trains ~1% of the parameters")
    per_example = (off.activations + off.logits) / max(1, plan.batch_size)
    fixed = off.total - off.activations - off.logits
    if plan.tokens_per_micro_batch < plan.batch_tokens:
        out.append(f"the token budget runs each batch as micro-batches of at most "
                   f"{plan.tokens_per_micro_batch} tokens: batch_size does not change the peak; "
                   "training.max_tokens_per_batch does")
    elif per_example > 0:
        room = int((0.8 * avail - fixed) / per_example)
        if room >= 1:
            out.append(f"largest batch_size that fits without checkpointing: about {room}")
    return out


def make_plan(config: TrainConfig, *, probe_steps: int = 0, progress: bool = False) -> Plan:
    """The memory estimate (and, with probe_steps > 0, a measured time per epoch) for `config`."""
    import torch  # (resident before the runtime is measured, as during training)
    import transformers  # noqa: F401

    shape = model_shape(config)
    device, avail = available_memory()
    lengths = data_lengths(config)
    tokens = micro_batch_tokens(config, lengths, "cuda" if torch.cuda.is_available() else "cpu")
    runtime = current_rss()
    memory = {name: estimate_memory(shape, config, checkpointing=on, runtime=runtime,
                                    tokens=tokens)
              for name, on in (("checkpointing off", False), ("checkpointing on", True))}
    plan = Plan(model=config.model, method=config.method, device=device, params=shape.params,
                trainable=trainable_params(shape, config),
                batch_size=config.training.batch_size, tokens_per_micro_batch=tokens,
                batch_tokens=batch_tokens(config, lengths)[0],
                logit_chunk_tokens=logit_chunk_tokens(tokens, shape.vocab), memory=memory,
                configured_checkpointing=config.training.gradient_checkpointing == "on",
                available=avail,
                allocator="jemalloc" if allocator.find_jemalloc() else "system")
    if probe_steps > 0:
        plan.probe = probe(config, probe_steps, progress=progress)
    plan.advice = advise(plan)
    return plan


def probe(config: TrainConfig, steps: int = 4, *, progress: bool = False) -> Probe:
    """Train `steps` real steps in a scratch run dir; time the steps after the first."""
    import json

    from tuneloop.train.loop import TrainHooks, train

    stamps: list[float] = []
    hooks = TrainHooks(after_step=lambda step: stamps.append(time.perf_counter()))
    cfg = config.model_copy(deep=True)
    cfg.training.max_steps = max(2, steps)
    cfg.training.epochs = 1.0
    cfg.eval.at_start = False
    cfg.logging.progress = progress
    cfg.logging.report_to = []
    with tempfile.TemporaryDirectory(prefix="tuneloop-plan-") as tmp:
        train(cfg, output_dir=Path(tmp) / "probe", hooks=hooks, progress=progress)
        info = json.loads((Path(tmp) / "probe" / "run.json").read_text(encoding="utf-8"))
    gaps = [b - a for a, b in itertools.pairwise(stamps)] or [0.0]
    per_step = sum(gaps) / len(gaps)
    t = config.training
    micro = math.ceil(info.get("train_examples", 0) / t.batch_size)
    per_epoch = max(1, math.ceil(micro / t.gradient_accumulation))
    return Probe(steps=len(stamps), seconds_per_step=per_step, steps_per_epoch=per_epoch,
                 epoch_seconds=per_step * per_epoch, peak_rss=peak_rss())


def format_plan(plan: Plan) -> str:
    """The plan as lines of text (what `tuneloop plan` and `train` print)."""
    mb = 1024 ** 2
    lines = [f"plan: {plan.model} ({plan.method}), {plan.params / 1e6:.1f}M parameters, "
             f"{plan.trainable / 1e6:.2f}M trainable; {plan.tokens_per_micro_batch} tokens in the "
             f"largest micro-batch; device {plan.device}"
             + (f", {plan.available / GiB:.1f} GiB free" if plan.available else "")]
    lines.append(f"  {'peak memory per process (MiB)':34} {'ckpt off':>9} {'ckpt on':>9}")
    off, on = plan.memory["checkpointing off"], plan.memory["checkpointing on"]
    logit_label = ("logits (full vocabulary)" if plan.logit_chunk_tokens is None
                   else f"logits (chunks of {plan.logit_chunk_tokens} tokens)")
    for label, key in (("runtime (python+torch)", "runtime"), ("weights", "weights"),
                       ("gradients", "grads"), ("optimizer (AdamW)", "optimizer"),
                       ("activations", "activations"), (logit_label, "logits")):
        lines.append(f"  {label:34} {getattr(off, key) / mb:9.0f} {getattr(on, key) / mb:9.0f}")
    lines.append(f"  {'total':34} {off.total / mb:9.0f} {on.total / mb:9.0f}"
                 f"   (configured: checkpointing {'on' if plan.configured_checkpointing else 'off'})")
    if plan.probe:
        p = plan.probe
        lines.append(f"  time: {p.seconds_per_step:.2f} s/step over {p.steps} measured steps; "
                     f"~{p.steps_per_epoch} steps/epoch → {p.epoch_seconds / 60:.1f} min/epoch")
    lines += [f"  advice: {a}" for a in plan.advice]
    return "\n".join(lines)


def measure_components(model: Any, batch: dict[str, Any], *, lora: bool = False
                       ) -> dict[str, int]:
    """Measured bytes of the memory model's terms on a real model and batch (for the tests).

    weights/grads/optimizer: exact tensor sizes after one AdamW step; activations: the distinct
    tensors autograd saves during the forward (saved-tensor hooks), parameters excluded; logits:
    the logits tensor the forward returns.
    """
    import torch

    params = {p.data_ptr() for p in model.parameters()}
    saved: dict[tuple[int, int], int] = {}

    def pack(t: Any) -> Any:
        if t.data_ptr() not in params and t.device.type != "meta":
            saved[(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())] = \
                t.untyped_storage().nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(**batch)
    logits_bytes = out.logits.numel() * out.logits.element_size()
    out.loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    opt.step()
    state = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values()
                if torch.is_tensor(v) and v.dim() > 0)
    return {"weights": sum(p.numel() * p.element_size() for p in model.parameters()),
            "grads": sum(p.grad.numel() * p.grad.element_size() for p in trainable
                         if p.grad is not None),
            "optimizer": state, "activations": sum(saved.values()), "logits": logits_bytes}


__all__ = ["Memory", "Plan", "Probe", "Shape", "estimate_memory", "format_plan", "make_plan",
           "measure_components", "probe", "shape_of", "trainable_params"]
