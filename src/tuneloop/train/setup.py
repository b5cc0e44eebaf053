"""Setting up a training run, for any objective: processes and precision, the run directory, the
trainable model (LoRA or full), optimizer and schedule, trackers and the index row.

Every function here runs once before the loop starts; tuneloop.train.loop calls them in order.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuneloop import rundir
from tuneloop.errors import ConfigError, UsageError
from tuneloop.train.config import TrainConfig


def cpu_native_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX); without them
    bf16 matmuls are emulated and ~100x slower than fp32."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def precision(requested: str) -> str:
    """training.precision → accelerate's mixed_precision ("no", "bf16", "fp16").

    bf16/fp16 are autocast over fp32 master weights and optimizer state. On a CPU, bf16 needs
    native kernels (cpu_native_bf16); fp16 needs a GPU.
    """
    import torch

    gpu = torch.cuda.is_available()
    if requested == "fp32":
        return "no"
    if requested == "fp16" and not gpu:
        raise ConfigError("training.precision: fp16 needs a GPU", fix="use auto, bf16 or fp32")
    if requested == "bf16" and not gpu and not cpu_native_bf16():
        raise ConfigError(
            "training.precision: bf16 needs a GPU or a CPU with native bf16 (AVX512-BF16/AMX); "
            "this CPU has none, so bf16 would be emulated and far slower than fp32",
            fix="use auto or fp32")
    if requested != "auto":
        return requested
    if gpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    # bf16 on a native-bf16 CPU: tests/train/test_bf16.py shows the tiny model's 20-step loss
    # curve within 2 % of fp32 with it (fp32 master weights, autocast).
    return "bf16" if cpu_native_bf16() else "no"


def want_checkpointing(setting: str, model: Any, config: TrainConfig) -> bool:
    """auto: only on GPU, and only when a rough activation estimate exceeds free memory."""
    import torch

    if setting != "auto":
        return setting == "on"
    if not torch.cuda.is_available():
        return False
    cfg = model.config
    hidden = getattr(cfg, "hidden_size", 1024)
    layers = getattr(cfg, "num_hidden_layers", 24)
    tokens = config.training.batch_size * config.data.max_length
    # ~34 bytes of fp32-ish activations per hidden unit per token per layer (Korthikanti et al.)
    activations = 34 * tokens * hidden * layers
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    weights = params * 4 + trainable * 12  # weights + grads + Adam moments
    free, _ = torch.cuda.mem_get_info()
    return activations + weights > 0.8 * free


def check_trackers(report_to: list[str]) -> list[str]:
    """Validate tracker names against what accelerate supports and what is installed."""
    from accelerate import tracking

    available = {
        "tensorboard": tracking.is_tensorboard_available,
        "wandb": tracking.is_wandb_available,
        "mlflow": tracking.is_mlflow_available,
        "trackio": tracking.is_trackio_available,
        "comet_ml": tracking.is_comet_ml_available,
        "aim": tracking.is_aim_available,
        "clearml": tracking.is_clearml_available,
        "dvclive": tracking.is_dvclive_available,
        "swanlab": tracking.is_swanlab_available,
    }
    out = []
    for name in report_to:
        if name == "none":
            continue
        if name not in available:
            raise ConfigError(
                f"logging.report_to: unknown tracker {name!r}",
                fix=f"use one of {', '.join(available)} (or [] for metrics.jsonl only)",
            )
        if not available[name]():
            raise ConfigError(
                f"logging.report_to: {name} is not installed",
                fix=f"pip install {name} or remove it from logging.report_to",
            )
        out.append(name)
    return out


def start_processes(config: TrainConfig, output_dir: Path | None, resume: bool
                    ) -> tuple[Any, Path, list[str]]:
    """(accelerator, run_dir, trackers): processes joined, trackers checked, run dir chosen."""
    import torch
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState

    # cpu=True when there is no GPU: only then does accelerate see torchrun's processes as
    # MULTI_CPU (gloo) instead of silently running N independent single-process trainings.
    cpu = not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    trackers = check_trackers(config.logging.report_to)  # before anything is written
    run_dir = resolve_run_dir(config, output_dir, resume, state)
    mixed = precision(config.training.precision)
    if AcceleratorState._shared_state.get("_mixed_precision", mixed) != mixed:
        # A second run in this process with another precision (accelerate keeps one global
        # state and refuses to change it); the processes (PartialState) stay as they are.
        AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(mixed_precision=mixed,
                              log_with=trackers or None, project_dir=str(run_dir), cpu=cpu)
    return accelerator, run_dir, trackers


def resolve_run_dir(config: TrainConfig, output_dir: Path | None, resume: bool,
                    state: Any) -> Path:
    """The run directory, created by the main process and shared with every other one."""
    from accelerate.utils import broadcast_object_list

    path: list[Any] = [None]  # broadcast_object_list's in/out list
    if state.is_main_process:
        if output_dir is not None:
            run_dir = Path(output_dir).resolve()
            if not resume and rundir.RunDir(run_dir).run_info.exists():
                path[0] = UsageError(
                    f"{run_dir} already holds a run", fix="pass --resume, or another --output-dir")
            elif not resume and run_dir.is_dir() and any(run_dir.iterdir()):
                path[0] = UsageError(f"{run_dir} is not empty; a run never writes over other files",
                                     fix="pass a new or empty --output-dir")
            else:
                run_dir.mkdir(parents=True, exist_ok=True)
                path[0] = str(run_dir)
        elif resume:
            path[0] = UsageError("--resume needs the run directory",
                                 fix="pass --output-dir RUN_DIR of the run to resume")
        else:
            from tuneloop.workspace import new_run_dir

            path[0] = str(new_run_dir(config.name))
    if state.num_processes > 1:
        broadcast_object_list(path, from_process=0)
    if isinstance(path[0], Exception):
        raise path[0]
    return Path(path[0])


@contextmanager
def remove_if_still_empty(run_dir: Path, *, enabled: bool):
    """On an error inside the block, delete `run_dir` if nothing has been written into it."""
    try:
        yield
    except BaseException:
        if enabled and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise


def load_policy(config: TrainConfig, device: Any) -> tuple[Any, Any, Any]:
    """(model, tokenizer, renderer): fp32 master weights (bf16/fp16 come from autocast)."""
    from tuneloop.data.render import Renderer
    from tuneloop.models import load_model

    model, tokenizer = load_model(config.model, device=str(device), dtype="float32",
                                  trainable=True)
    renderer = Renderer(tokenizer, template=config.data.template,
                        max_length=config.data.max_length,
                        train_on_prompt=config.data.train_on_prompt)
    return model, tokenizer, renderer


def make_trainable(model: Any, config: TrainConfig) -> Any:
    """LoRA adapter on the base, or every weight trainable.

    A LoRA run as the model: with method lora its adapter is trained further (the same adapter,
    loaded trainable — what a later iterate round does, so a round never changes the recipe);
    with method full the adapter is merged into the weights first.
    """
    from accelerate.utils import set_seed
    from peft import LoraConfig, get_peft_model

    from tuneloop.models import peft_wrapping

    if hasattr(model, "merge_and_unload"):  # the model ref is a LoRA run directory
        if config.method == "lora":
            _check_same_adapter(model, config)
            return model
        model = model.merge_and_unload()
    if config.method == "full":
        model.requires_grad_(True)
        return model
    set_seed(config.training.seed)  # the adapter init must not depend on what loading consumed
    lc = config.lora
    with peft_wrapping():  # peft reads a deprecated transformers property (see models.py)
        return get_peft_model(model, LoraConfig(
            r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
            target_modules=lc.target_modules, task_type="CAUSAL_LM"))


def _check_same_adapter(model: Any, config: TrainConfig) -> None:
    """Continuing an adapter keeps its shape: a different lora.r or alpha is a config error."""
    peft_config = model.peft_config["default"]
    if (peft_config.r, peft_config.lora_alpha) != (config.lora.r, config.lora.alpha):
        raise ConfigError(
            f"model {config.model!r} is a LoRA run with r={peft_config.r}, "
            f"alpha={peft_config.lora_alpha}; continuing it with lora.r={config.lora.r}, "
            f"lora.alpha={config.lora.alpha} would need a new adapter",
            fix=f"set lora.r={peft_config.r} lora.alpha={peft_config.lora_alpha}, or train a "
            "new LoRA from the base model")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"the adapter of {config.model!r} loaded frozen",
                          fix="load it with trainable=True (tuneloop.models.load_model)")


def speed_up(model: Any, config: TrainConfig) -> Any:
    """Activation checkpointing when memory needs it; torch.compile when asked: the whole model
    on a GPU, each layer's MLP and norms on a CPU (compile_regions)."""
    import torch

    if want_checkpointing(config.training.gradient_checkpointing, model, config):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if config.method == "lora":
            model.enable_input_require_grads()
    if config.training.compile:
        if torch.cuda.is_available():
            model = torch.compile(model)
        else:
            compile_regions(model)
    return model


# Module classes whose forward is elementwise work around matmuls (RMSNorm; SwiGLU's silu * up).
_FUSED_REGIONS = ("RMSNorm", "MLP")


def compile_regions(model: Any) -> int:
    """Compile each MLP and RMSNorm module in place (dynamic shapes); returns how many.

    On a CPU the whole-model compile does not pay: the per-document attention loops over the
    packed documents, so every new batch layout would recompile. The regions compiled here are
    the elementwise work between matmuls (norms, silu * up), which inductor fuses: 1.01-1.07x on
    the embedded model's layers alone (benchmarks/cpu_compile.py) and no gain measured on a whole
    4-step run, at about 30 s of compiling on first use on 2 cores (cached on disk after). Off by
    default for that reason; a lever for long runs.
    """
    import os
    import shutil

    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:  # inductor writes C++ for the CPU and builds it
        raise ConfigError(
            f"training.compile on a CPU needs a C++ compiler; {compiler!r} is not on PATH",
            fix="install one (e.g. apt-get install g++, or set CXX) or set training.compile: "
            "false")
    count = 0
    for module in model.modules():
        if type(module).__name__.endswith(_FUSED_REGIONS) and hasattr(module, "compile"):
            module.compile(dynamic=True)
            count += 1
    return count


def make_optimizer(model: Any, config: TrainConfig) -> Any:
    """AdamW with weight decay on matrices only (not on norms/biases); fused where available."""
    import torch

    t = config.training
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    kw: dict[str, Any] = {"lr": t.learning_rate, "betas": (t.adam_beta1, t.adam_beta2)}
    # fused AdamW (CPU and CUDA kernels in torch >= 2.4): one kernel per step instead of many
    try:
        return torch.optim.AdamW(groups, fused=True, **kw)
    except (RuntimeError, TypeError):  # a device/dtype without a fused kernel
        return torch.optim.AdamW(groups, **kw)


def make_scheduler(optimizer: Any, config: TrainConfig, total_steps: int) -> Any:
    """transformers' schedule of training.scheduler with linear warmup."""
    from transformers import get_scheduler

    t = config.training
    warmup = t.warmup_steps or math.ceil(t.warmup_ratio * total_steps)
    name = "constant_with_warmup" if t.scheduler == "constant" else t.scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def flat_hparams(config: TrainConfig) -> dict[str, Any]:
    """Flat scalar hyper-parameters for trackers (TensorBoard hparams take no lists)."""
    out: dict[str, Any] = {}
    for section, values in config.model_dump(mode="json").items():
        if isinstance(values, dict):
            for k, v in values.items():
                if isinstance(v, (int, float, str, bool)):
                    out[f"{section}.{k}"] = v
        elif isinstance(values, (int, float, str, bool)):
            out[section] = values
    return out


def record_in_index(run_dir: Path, config: TrainConfig, info: dict[str, Any]) -> None:
    """Add or update the run's row in the workspace index (upsert keyed by the run dir)."""
    from tuneloop.index import record_run

    record_run(run_dir, name=config.name, model=config.model, method=config.method,
               data_fingerprint=info["data_fingerprint"], steps=info["steps"],
               best_eval_loss=info.get("best_eval_loss"), status=info["status"],
               config=config.model_dump(mode="json"))
