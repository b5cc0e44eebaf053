"""One linear training recipe: setup → train → evaluate → save. Full or LoRA, under Accelerate.

Read it top to bottom: `train()` is the whole recipe. Numerics that make resume and DDP exact:
- the data order is `plan_batches(lengths, seed, epoch)` over micro-batches; one optimizer step
  consumes `gradient_accumulation × world_size` consecutive micro-batches of that plan (rank r
  takes every world_size-th), so the order is defined over the global batch (R1, R28);
- the loss of a step is the sum of token cross-entropies divided by the number of trained tokens
  in the whole step (all micro-batches, all processes), so accumulation and DDP equal one batch.

Test hooks (documented in docs/training.md): TUNELOOP_TEST_KILL_AT_STEP=k SIGKILLs the process
right after optimizer step k; TUNELOOP_TEST_KILL_IN_SAVE=k SIGKILLs it half-way through saving
checkpoint k (see checkpoint.py). Both exist only so tests can prove R1/R3.
"""

from __future__ import annotations

import math
import os
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.config import TrainConfig, config_fingerprint
from tuneloop.errors import (
    CheckpointError,
    ConfigError,
    TrainingError,
    TuneloopError,
    UsageError,
)
from tuneloop.train import checkpoint as ckpt
from tuneloop.train import rundir


@dataclass
class TrainResult:
    """What a finished run reports (also written to RUN/run.json)."""

    run_dir: Path
    steps: int
    best_eval_loss: float | None
    final_train_loss: float | None
    final_eval_loss: float | None = None
    best_checkpoint: Path | None = None
    model_dir: Path | None = None
    stopped_early: bool = False
    skipped_steps: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    resumed_from: int | None = None


@dataclass
class EvalLoss:
    """Held-out loss over trained (label != -100) tokens."""

    loss: float
    perplexity: float
    n_tokens: int


def evaluate_loss(model: Any, examples: list[Any], *, batch_size: int = 8, accelerator: Any = None,
                  progress: Any = False) -> EvalLoss:
    """Mean token loss and perplexity of `model` on rendered examples (sharded across processes)."""
    import torch

    from tuneloop.train.collate import collate_packed, packed_loss

    if accelerator is not None:
        # Never the DDP wrapper: its forward syncs buffers collectively, and ranks here run
        # different numbers of eval batches (that would deadlock).
        model = accelerator.unwrap_model(model)
    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)
    chunks = [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]
    mine = chunks[rank::world]
    # progress: False, True (own bar), or a live rich Progress to add an eval task to
    shared = progress if not isinstance(progress, bool) else None
    bar = nullcontext(shared) if shared is not None else _progress(
        bool(progress) and rank == 0, "eval", len(mine))
    autocast = accelerator.autocast() if accelerator is not None else nullcontext()
    with torch.no_grad(), autocast, bar as prog:
        task = prog.add_task("eval", total=len(mine), info="") if prog else None
        for chunk in mine:
            loss_sum, n = packed_loss(model, collate_packed(chunk))  # moves it to the model
            total[0] += loss_sum.double()
            total[1] += float(n)
            if prog:
                prog.advance(task)
        if shared is not None and task is not None:
            shared.remove_task(task)
    if accelerator is not None and world > 1:
        total = accelerator.reduce(total, reduction="sum")
    model.train(was_training)
    loss_sum, n_tok = total.tolist()
    loss = loss_sum / n_tok if n_tok else float("nan")
    ppl = math.exp(loss) if loss < 700 else float("inf")
    return EvalLoss(loss=loss, perplexity=ppl, n_tokens=int(n_tok))


def _progress(enabled: bool, what: str, total: int):
    """A rich progress bar with ETA (or a no-op context)."""
    if not enabled:
        return nullcontext(None)
    from rich.progress import TextColumn

    from tuneloop.progress import eta_progress

    return eta_progress(f"[bold]{what}", TextColumn("{task.fields[info]}"))


def _precision(requested: str) -> str:
    import torch

    if requested != "auto":
        if requested in ("bf16", "fp16") and not torch.cuda.is_available():
            raise ConfigError(f"training.precision: {requested} needs a GPU", fix="use auto or fp32")
        return {"fp32": "no"}.get(requested, requested)
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def _want_checkpointing(setting: str, model: Any, config: TrainConfig) -> bool:
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


def _apply_lora(model: Any, config: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lc = config.lora
    peft_cfg = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                          target_modules=lc.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, peft_cfg)


def _make_optimizer(model: Any, config: TrainConfig) -> Any:
    import torch

    t = config.training
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)  # no decay on norms/biases
    groups = [{"params": decay, "weight_decay": t.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    kw: dict[str, Any] = {"lr": t.learning_rate, "betas": (t.adam_beta1, t.adam_beta2)}
    # fused AdamW (CPU and CUDA kernels in torch >= 2.4): one kernel per step instead of many
    try:
        return torch.optim.AdamW(groups, fused=True, **kw)
    except (RuntimeError, TypeError):  # a device/dtype without a fused kernel
        return torch.optim.AdamW(groups, **kw)


def _make_scheduler(optimizer: Any, config: TrainConfig, total_steps: int) -> Any:
    from transformers import get_scheduler

    t = config.training
    warmup = t.warmup_steps or math.ceil(t.warmup_ratio * total_steps)
    name = "constant_with_warmup" if t.scheduler == "constant" else t.scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def _resolve_run_dir(config: TrainConfig, output_dir: Path | None, resume: bool,
                     state: Any) -> Path:
    """The run directory, created by the main process and shared with every other one."""
    from accelerate.utils import broadcast_object_list

    path: list[Any] = [None]
    if state.is_main_process:
        if output_dir is not None:
            run_dir = Path(output_dir).resolve()
            if not resume and (run_dir / rundir.RUN_FILE).exists():
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
def _remove_if_still_empty(run_dir: Path, *, enabled: bool):
    """On an error inside the block, delete `run_dir` if nothing has been written into it."""
    try:
        yield
    except BaseException:
        if enabled and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise


def _trainable(model: Any) -> dict[str, Any]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _save(accelerator: Any, root: Path, step: int, model: Any, optimizer: Any, scheduler: Any,
          state: dict) -> Path:
    """Collective checkpoint save: every rank gives its RNG state, rank 0 writes, all learn the
    outcome (so a failed write on rank 0 never leaves other ranks waiting forever, R27)."""
    from accelerate.utils import broadcast_object_list, gather_object

    rngs = gather_object([ckpt.capture_rng()]) if accelerator.num_processes > 1 else [
        ckpt.capture_rng()]
    outcome: list[Any] = [None]
    if accelerator.is_main_process:
        try:
            weights = _trainable(accelerator.unwrap_model(model, keep_torch_compile=False))
            path = ckpt.save_checkpoint(
                root, step, weights=weights, optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(), rng={"ranks": rngs}, state=state)
            outcome[0] = str(path)
        except CheckpointError as exc:
            outcome[0] = exc
    if accelerator.num_processes > 1:
        broadcast_object_list(outcome, from_process=0)
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return Path(outcome[0])


def _load_resume(run_dir: Path, accelerator: Any, model: Any, optimizer: Any, scheduler: Any,
                 *, data_id: str, config_fp: str, micro_per_step: int, force: bool) -> dict:
    """Restore weights/optimizer/scheduler/RNG from the latest complete checkpoint (R1, R2, R6)."""
    import torch

    latest = ckpt.find_latest_complete(run_dir / rundir.CHECKPOINTS_DIR)
    if latest is None:
        raise CheckpointError("nothing to resume: the run has no complete checkpoint",
                              where=str(run_dir),
                              fix="set save.interval so checkpoints are written, or start anew")
    loaded = ckpt.load_checkpoint(latest)
    state = loaded.state
    if state.get("micro_per_step") != micro_per_step:
        raise CheckpointError(
            f"the checkpoint was written with {state.get('micro_per_step')} micro-batches per "
            f"step (gradient_accumulation x processes) and this launch has {micro_per_step}",
            where=str(latest),
            fix="keep gradient_accumulation x number of processes equal to the original run "
                f"(e.g. --set training.gradient_accumulation="
                f"{max(1, state.get('micro_per_step', 1) // accelerator.num_processes)})")
    if not force:
        for what, old, new in (("data", state.get("data_fingerprint"), data_id),
                               ("config", state.get("config_fingerprint"), config_fp)):
            if old != new:
                raise CheckpointError(
                    f"the {what} changed since the checkpoint was written "
                    f"(fingerprint {str(old)[:12]} → {new[:12]}); resuming would not continue "
                    "the same run", where=str(latest),
                    fix="restore the original data/config, or pass --force-resume")
    params = _trainable(accelerator.unwrap_model(model, keep_torch_compile=False))
    if set(params) != set(loaded.weights):
        raise CheckpointError("checkpoint weights do not match the model's trainable parameters",
                              where=str(latest), fix="resume with the same model and method")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(loaded.weights[name].to(p.device, p.dtype))
    optimizer.load_state_dict(loaded.optimizer)
    scheduler.load_state_dict(loaded.scheduler)
    ranks = loaded.rng["ranks"]
    # Same world size: each rank continues its own RNG stream; otherwise rank 0's stream.
    ckpt.restore_rng(ranks[accelerator.process_index] if len(ranks) == accelerator.num_processes
                     else ranks[0])
    state["path"] = str(latest)
    return state


def _maybe_kill(step: int) -> None:
    if os.environ.get("TUNELOOP_TEST_KILL_AT_STEP") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def _run_suites(config: TrainConfig, model: Any, tokenizer: Any, renderer: Any) -> dict[str, float]:
    from tuneloop.eval.suite_run import run_suite_on_model

    scores = {}
    for path in config.eval.suites:
        result = run_suite_on_model(model, tokenizer, renderer, path)
        scores[path] = float(result.pass_rate)
    return scores


def train(config: TrainConfig, *, resume: bool = False, force_resume: bool = False,
          output_dir: str | Path | None = None, progress: bool | None = None) -> TrainResult:
    """Fine-tune per `config` into a run directory; resume from its latest checkpoint if asked."""
    import torch
    from accelerate import Accelerator, PartialState
    from accelerate.utils import set_seed

    from tuneloop.data.render import Renderer
    from tuneloop.models import load_model
    from tuneloop.train.collate import (
        collate_packed,
        enable_packed_attention,
        packed_loss,
        plan_batches,
    )
    from tuneloop.train.dataset import prepare_data

    t = config.training
    force_resume = force_resume or config.resume.force
    started = time.time()

    # ---- setup: processes, run dir, trackers --------------------------------------------
    # cpu=True when there is no GPU: only then does accelerate see torchrun's processes as
    # MULTI_CPU (gloo) instead of silently running N independent single-process trainings.
    cpu = not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    trackers = rundir.check_trackers(config.logging.report_to)  # before anything is written
    run_dir = _resolve_run_dir(config, Path(output_dir) if output_dir else None, resume, state)
    accelerator = Accelerator(mixed_precision=_precision(t.precision), log_with=trackers or None,
                              project_dir=str(run_dir), cpu=cpu)
    main = accelerator.is_main_process
    show = (config.logging.progress if progress is None else progress) and main
    world, rank = accelerator.num_processes, accelerator.process_index
    micro_per_step = t.gradient_accumulation * world
    set_seed(t.seed)

    # ---- data and model -------------------------------------------------------------------
    # fp32 master weights; bf16/fp16 come from autocast (accelerate mixed_precision)
    # A bad model ref or unusable data must not leave an empty run directory behind.
    with _remove_if_still_empty(run_dir, enabled=main and not resume):
        model, tokenizer = load_model(config.model, device=str(accelerator.device),
                                      dtype="float32", trainable=True)
        renderer = Renderer(tokenizer, template=config.data.template,
                            max_length=config.data.max_length,
                            train_on_prompt=config.data.train_on_prompt)
        data = prepare_data(config.data, renderer)
    data_id = data.fingerprint["id"]
    config_fp = config_fingerprint(config, world_size=world)
    if hasattr(model, "merge_and_unload"):  # the model ref is a LoRA run directory
        if config.method == "lora":
            raise ConfigError(
                f"model {config.model!r} is a LoRA run; a new adapter on top of an adapter is "
                "not supported", fix="train a LoRA from its base model, or use method: full "
                "(the adapter is merged into the weights first)")
        model = model.merge_and_unload()
    if config.method == "lora":
        set_seed(t.seed)  # the adapter init must not depend on what loading consumed
        model = _apply_lora(model, config)
    else:
        model.requires_grad_(True)
    # per-document attention for packed rows (fastest measured path; see train/collate.py)
    enable_packed_attention(model)
    if _want_checkpointing(t.gradient_checkpointing, model, config):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if config.method == "lora":
            model.enable_input_require_grads()
    if t.compile and torch.cuda.is_available():
        model = torch.compile(model)
    lengths = [len(ex.input_ids) for ex in data.train]

    def epoch_plan(epoch: int) -> list[list[int]]:
        return plan_batches(lengths, batch_size=t.batch_size, seed=t.seed, epoch=epoch,
                            max_tokens=t.max_tokens_per_batch)

    steps_per_epoch = math.ceil(len(epoch_plan(0)) / micro_per_step)
    total_steps = t.max_steps or max(1, math.ceil(t.epochs * steps_per_epoch))
    optimizer = _make_optimizer(model, config)
    scheduler = _make_scheduler(optimizer, config, total_steps)
    # The scheduler is deliberately not prepared: accelerate would step it once per process.
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    # ---- run directory --------------------------------------------------------------------
    metrics = rundir.Metrics(run_dir, accelerator, enabled=main)
    ckpt_root = run_dir / rundir.CHECKPOINTS_DIR
    run_info: dict[str, Any] = {
        "name": config.name, "status": "running", "model": config.model, "method": config.method,
        "data_fingerprint": data_id, "config_fingerprint": config_fp, "world_size": world,
        "total_steps": total_steps, "steps": 0, "dropped": data.dropped,
        "train_examples": len(data.train), "eval_examples": len(data.eval),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }
    if main:
        rundir.write_atomic(run_dir / rundir.CONFIG_FILE, config.to_yaml())
        rundir.write_json(run_dir / rundir.FINGERPRINT_FILE, data.fingerprint)
        # Listed from the start, so `tuneloop runs` shows running and failed runs too.
        _record_in_index(run_dir, config, run_info)
        if trackers:
            accelerator.project_configuration.logging_dir = str(run_dir)
    if trackers:
        accelerator.init_trackers("tensorboard", config=_flat_hparams(config))
    if data.dropped and main:  # R13: said before training starts, and kept in run.json
        from rich.console import Console

        Console(stderr=True).print(
            f"[yellow]dropped examples:[/] {data.dropped} (counts by reason; see run.json)")

    # ---- resume ---------------------------------------------------------------------------
    step, epoch, pos = 0, 0, 0
    best: dict[str, Any] = {"metric": None, "eval_loss": None, "checkpoint": None}
    bad_evals, skipped, resumed_from = 0, 0, None
    if resume:
        st = _load_resume(run_dir, accelerator, model, optimizer, scheduler, data_id=data_id,
                          config_fp=config_fp, micro_per_step=micro_per_step, force=force_resume)
        step, epoch, pos = st["step"], st["epoch"], st["position"]
        best, bad_evals, skipped = st["best"], st["bad_evals"], st["skipped_steps"]
        resumed_from = step
        metrics.log("resume", step, checkpoint=st["path"])
    if main:
        rundir.write_json(run_dir / rundir.RUN_FILE, run_info)

    # ---- train ----------------------------------------------------------------------------
    device = accelerator.device
    fp16 = accelerator.mixed_precision == "fp16"
    params = [p for p in model.parameters() if p.requires_grad]
    first_bad = torch.zeros((), dtype=torch.long, device=device)
    win_loss = torch.zeros((), dtype=torch.float64, device=device)
    win_tok = torch.zeros((), dtype=torch.float64, device=device)
    win_real, win_padded, win_t0, overflows = 0, 0, time.time(), 0
    last_train_loss: float | None = None
    last_eval: EvalLoss | None = None
    stopped_early = False
    grad_norm = torch.zeros((), device=device)

    def check_finite() -> None:
        """Raise if any process saw a NaN/inf since the last check (one sync, R8)."""
        bad = first_bad.reshape(1)
        if world > 1:
            bad = accelerator.gather(bad)
        nonzero = [int(b) for b in bad.tolist() if b]
        if nonzero:
            raise TrainingError(
                f"loss or gradient became NaN/inf at step {min(nonzero)}; training stopped and "
                "no checkpoint was written after it", where=str(run_dir),
                fix="lower training.learning_rate, use precision bf16/fp32, check the data, or "
                    "set training.nan_policy: skip")

    def do_eval() -> EvalLoss | None:
        nonlocal best, bad_evals, last_eval, last_eval_step
        if not data.eval:
            return None
        last_eval_step = step
        check_finite()
        res = evaluate_loss(model, data.eval, batch_size=config.eval.batch_size,
                            accelerator=accelerator, progress=live[0] if show else False)
        metrics.log("eval", step, eval_loss=res.loss, perplexity=res.perplexity,
                    eval_tokens=res.n_tokens)
        if best["eval_loss"] is None or res.loss < best["eval_loss"]:
            improved = best["eval_loss"] is None or (
                best["eval_loss"] - res.loss > config.eval.early_stopping_min_delta)
            best["eval_loss"] = res.loss
            bad_evals = 0 if improved else bad_evals + 1
        else:
            bad_evals += 1
        last_eval = res
        return res

    def do_save() -> None:
        nonlocal best
        check_finite()
        res = last_eval if last_eval_step == step else do_eval()
        metric = res.loss if res is not None else None
        if config.eval.suites:
            scores = _run_suites(
                config, accelerator.unwrap_model(model, keep_torch_compile=False), tokenizer,
                renderer)
            for path, rate in scores.items():
                metrics.log("suite", step, suite=path, pass_rate=rate)
            if config.eval.best_metric == "suite":
                metric = -sum(scores.values()) / len(scores)  # lower is better throughout
        name = ckpt.step_dir_name(step)
        is_best = metric is not None and (best["metric"] is None or metric < best["metric"])
        if is_best:
            best = {**best, "metric": metric, "checkpoint": name}
        st = {"epoch": epoch, "position": pos, "data_fingerprint": data_id,
              "config_fingerprint": config_fp, "micro_per_step": micro_per_step,
              "world_size": world, "best": best, "bad_evals": bad_evals,
              "skipped_steps": skipped, "metric": metric}
        _save(accelerator, ckpt_root, step, model, optimizer, scheduler, st)
        if main:
            keep_best = ckpt_root / best["checkpoint"] if config.save.keep_best and best[
                "checkpoint"] else None
            ckpt.rotate(ckpt_root, keep_last=config.save.keep_last, best=keep_best)
        metrics.log("checkpoint", step, path=name, metric=metric)

    last_eval_step = -1
    live: list[Any] = [False]  # the train progress bar once it is live (eval adds a task to it)
    plan = epoch_plan(epoch)
    if config.eval.at_start and not resume:
        do_eval()  # step 0: the base model's loss, the number training should beat
        best["eval_loss"], bad_evals = None, 0  # the baseline is not a checkpoint to keep
        win_t0 = time.time()
    try:
        with _progress(show, "train", total_steps) as prog:
            task = prog.add_task("train", total=total_steps, completed=step, info="") if prog else None
            live[0] = prog or False
            while step < total_steps and not stopped_early:
                group = plan[pos:pos + micro_per_step]
                pos += len(group)
                mine = group[rank::world]
                batches = [collate_packed([data.train[i] for i in mb]) for mb in mine]
                n_local = sum(int(b["n_trained_tokens"]) for b in batches)
                n_step = torch.tensor(float(n_local), dtype=torch.float64, device=device)
                if world > 1:
                    n_step = accelerator.reduce(n_step, reduction="sum")
                # Scale so that the gradient (averaged over processes by DDP) is sum(CE)/n_step.
                scale = world / n_step.clamp_min(1.0)
                # A rank without a micro-batch in a short last step still joins the gradient sync.
                work = [(b, 1.0) for b in batches] or [
                    (collate_packed([data.train[i] for i in group[0]]), 0.0)]
                step_loss = torch.zeros((), dtype=torch.float64, device=device)
                for j, (batch, weight) in enumerate(work):
                    sync = j == len(work) - 1
                    with (nullcontext() if sync else accelerator.no_sync(model)), \
                            accelerator.autocast():
                        loss_sum, _ = packed_loss(model, batch)
                        accelerator.backward(loss_sum * (scale * weight).to(loss_sum.dtype))
                    step_loss += loss_sum.detach().double() * weight
                    win_real += int(batch["n_real_tokens"]) if weight else 0
                    win_padded += int(batch["input_ids"].numel()) if weight else 0
                grad_norm = accelerator.clip_grad_norm_(params, t.max_grad_norm or float("inf"))
                finite = torch.isfinite(step_loss)
                if not fp16:
                    finite = finite & torch.isfinite(grad_norm)
                if t.nan_policy == "skip":
                    ok = bool(accelerator.reduce(finite.float(), reduction="sum") == world) \
                        if world > 1 else bool(finite)  # one sync per step, only in skip mode
                    if ok:
                        optimizer.step()
                    else:
                        skipped += 1
                        metrics.log("skipped", step + 1, reason="nan_or_inf")
                else:
                    first_bad = torch.where((first_bad == 0) & ~finite,
                                            torch.tensor(step + 1, device=device), first_bad)
                    optimizer.step()
                if fp16 and accelerator.optimizer_step_was_skipped:
                    overflows += 1
                lr_used = scheduler.get_last_lr()[0]  # the LR this step was taken with
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                win_loss += torch.where(finite, step_loss, torch.zeros_like(step_loss))
                win_tok += torch.where(finite, n_step / world, torch.zeros_like(n_step))
                if pos >= len(plan):
                    epoch, pos = epoch + 1, 0
                    plan = epoch_plan(epoch)
                _maybe_kill(step)

                if step % config.logging.interval == 0 or step == total_steps:
                    if t.nan_policy == "stop":
                        check_finite()
                    tot = torch.stack([win_loss, win_tok])
                    if world > 1:
                        tot = accelerator.reduce(tot, reduction="sum")
                    loss_val, tok_val = tot.tolist()
                    elapsed = max(time.time() - win_t0, 1e-9)
                    last_train_loss = loss_val / tok_val if tok_val else float("nan")
                    metrics.log("train", step, loss=last_train_loss,
                                lr=lr_used, grad_norm=float(grad_norm),
                                tokens_per_s=win_real * world / elapsed,
                                real_token_share=win_real / max(win_padded, 1), epoch=epoch,
                                skipped_steps=skipped, fp16_overflows=overflows)
                    if prog:
                        prog.update(task, info=f"loss {last_train_loss:.4f}")
                    win_loss.zero_()
                    win_tok.zero_()
                    win_real, win_padded, win_t0 = 0, 0, time.time()
                if config.eval.interval and step % config.eval.interval == 0:
                    do_eval()
                    patience = config.eval.early_stopping_patience
                    if patience and bad_evals >= patience:
                        stopped_early = True
                        metrics.log("early_stop", step, bad_evals=bad_evals)
                if config.save.interval and step % config.save.interval == 0:
                    do_save()
                if prog:
                    prog.update(task, completed=step)

        # ---- final evaluate + save ------------------------------------------------------------
        check_finite()
        if data.eval and last_eval_step != step:
            do_eval()
    except (TuneloopError, KeyboardInterrupt) as exc:
        failed = isinstance(exc, TuneloopError)
        run_info.update({"status": "failed" if failed else "interrupted", "steps": step,
                         "error": exc.what if failed else "interrupted (Ctrl-C)"})
        if main:
            rundir.write_json(run_dir / rundir.RUN_FILE, run_info)
            _record_in_index(run_dir, config, run_info)
        raise
    if main:
        rundir.save_final_model(
            accelerator.unwrap_model(model, keep_torch_compile=False), tokenizer, renderer,
            run_dir, base_model=config.model, method=config.method, data_format=data.format)
    accelerator.wait_for_everyone()
    run_info.update({
        "status": "stopped_early" if stopped_early else "completed", "steps": step,
        "best_eval_loss": best["eval_loss"], "best_checkpoint": best["checkpoint"],
        "final_train_loss": last_train_loss,
        "final_eval_loss": last_eval.loss if last_eval else None,
        "skipped_steps": skipped, "fp16_overflows": overflows, "resumed_from": resumed_from,
        "seconds": round(time.time() - started, 2),
    })
    if main:
        rundir.write_json(run_dir / rundir.RUN_FILE, run_info)
        _record_in_index(run_dir, config, run_info)
    if trackers:
        accelerator.end_training()
    return TrainResult(
        run_dir=run_dir, steps=step, best_eval_loss=best["eval_loss"],
        final_train_loss=last_train_loss,
        final_eval_loss=last_eval.loss if last_eval else None,
        best_checkpoint=ckpt_root / best["checkpoint"] if best["checkpoint"] else None,
        model_dir=run_dir / rundir.MODEL_DIR,
        stopped_early=stopped_early, skipped_steps=skipped, dropped=data.dropped,
        resumed_from=resumed_from)


def _flat_hparams(config: TrainConfig) -> dict[str, Any]:
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


def _record_in_index(run_dir: Path, config: TrainConfig, info: dict[str, Any]) -> None:
    """Add or update the run's row in the workspace index (upsert keyed by the run dir)."""
    from tuneloop.index import record_run

    record_run(run_dir, name=config.name, model=config.model, method=config.method,
               data_fingerprint=info["data_fingerprint"], steps=info["steps"],
               best_eval_loss=info.get("best_eval_loss"), status=info["status"],
               config=config.model_dump(mode="json"))
