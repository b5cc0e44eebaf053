"""The one training loop, for every objective: setup → train → evaluate → save, under Accelerate.

Read `train()` top to bottom: it is the whole recipe. What is optimised comes from an objective
(`train/objectives/`, chosen by `config.objective`); this module knows nothing of SFT or DPO.
Numerics that make resume and DDP exact:
- the data order is `plan_batches(lengths, seed, epoch)` over batches; one optimizer step
  consumes `gradient_accumulation × world_size` consecutive batches of that plan (rank r takes
  every world_size-th), so the order is defined over the global batch (R1, R28); a batch over
  the token budget runs as several packed micro-batches, which only changes memory and speed;
- the loss of a step is the sum of the objective's per-unit losses divided by the number of units
  (trained tokens, pairs) in the whole step (all micro-batches, all processes), so accumulation
  and DDP equal one batch (R27).
State that changes while training lives in one `TrainState`; what stays fixed in one `Run`.
Callers add behaviour through `TrainHooks` (suite-gated saves, test fault injection).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneloop import allocator, rundir
from tuneloop.data.load import check_sources
from tuneloop.errors import (
    CheckpointError,
    ConfigError,
    TrainingError,
    TrainingInterrupted,
    TuneloopError,
)
from tuneloop.progress import optional_progress
from tuneloop.train import checkpoint as ckpt
from tuneloop.train import setup
from tuneloop.train.config import TrainConfig, config_fingerprint, token_budget
from tuneloop.train.guard import (
    Divergence,
    DivergenceGuard,
    TrainingDiverged,
    diverged_error,
    uniform_loss_of,
)
from tuneloop.train.objectives import (
    EvalResult,
    Objective,
    ObjectiveContext,
    PreparedData,
    make_objective,
)


@dataclass
class TrainHooks:
    """Behaviour a caller adds to the loop (all optional).

    after_step(step): right after optimizer step `step` (before its metrics are logged); used
        to time steps (benchmarks, the run-time planner) and by tests to stop at an exact step.
    evaluate_checkpoint(model, tokenizer, renderer) -> {name: pass rate}: run at every save on
        the unwrapped model (every process); each score is logged as a `suite` row and, with
        eval.best_metric: suite, their mean picks the best checkpoint. `tuneloop train` wires the
        eval suites of `eval.suites` here (train/ imports nothing from eval/).
    on_eval(step, eval_loss) -> bool: after every held-out evaluation (step 0 with
        eval.at_start, each eval.interval, each save, the end); True ends the run cleanly
        after that eval, with status `pruned` (`tuneloop sweep` asks its pruner here), unless
        the run has already taken its last step (nothing is left to save by stopping). Called
        on every process with the same (reduced) loss, so it must decide from its arguments.
    """

    after_step: Callable[[int], None] | None = None
    evaluate_checkpoint: Callable[[Any, Any, Any], dict[str, float]] | None = None
    on_eval: Callable[[int, float], bool] | None = None


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
    pruned: bool = False  # hooks.on_eval ended the run
    baseline_eval_loss: float | None = None  # step 0 (eval.at_start): the untrained model
    best_eval_step: int | None = None  # the step of best_eval_loss
    nothing_learned: bool = False  # the final eval loss equals the baseline (to ~1e-7)


@dataclass
class Best:
    """The best checkpoint so far (metric: lower is better) and the best eval loss."""

    metric: float | None = None
    eval_loss: float | None = None
    checkpoint: str | None = None
    eval_step: int | None = None  # the step that scored eval_loss


@dataclass
class TrainState:
    """Everything that changes while training. The first six fields are what a checkpoint saves
    and a resume restores; the rest is rebuilt or only reported."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # micro-batches of this epoch's plan already consumed
    best: Best = field(default_factory=Best)
    bad_evals: int = 0  # evals in a row without improvement (early stopping)
    skipped: int = 0  # steps skipped by nan_policy: skip
    resumed_from: int | None = None
    stopped_early: bool = False
    pruned: bool = False  # hooks.on_eval asked to stop
    overflows: int = 0  # fp16 steps the grad scaler skipped
    lr_used: float = 0.0  # the LR the last step was taken with
    grad_norm: Any = 0.0  # device tensor: no sync per step
    first_bad: Any = None  # device tensor: first step with a NaN/inf (nan_policy: stop)
    last_train_loss: float | None = None
    last_eval: EvalResult | None = None
    last_eval_step: int = -1
    baseline_eval_loss: float | None = None  # step 0's eval (eval.at_start)
    guard: DivergenceGuard = field(default_factory=DivergenceGuard)  # training.on_divergence


@dataclass
class Window:
    """Sums since the last `train` row; device tensors, so a step costs no host sync."""

    loss: Any
    units: Any
    extras: dict[str, Any] = field(default_factory=dict)
    real_tokens: int = 0
    positions: int = 0
    t0: float = field(default_factory=time.time)


@dataclass
class Run:
    """What stays fixed while training: config, processes, model, objective, data, plan."""

    config: TrainConfig
    accelerator: Any
    objective: Objective
    model: Any
    optimizer: Any
    scheduler: Any
    tokenizer: Any
    renderer: Any
    data: PreparedData
    lengths: list[int]
    micro_per_step: int  # batches of the plan per step: gradient_accumulation x processes
    token_budget: int | None  # tokens per packed micro-batch (a batch may run as several)
    total_steps: int
    data_id: str
    config_fp: str
    dir: rundir.RunDir
    metrics: rundir.Metrics
    hooks: TrainHooks
    show: bool  # progress bars (main process only)
    info: dict[str, Any] = field(default_factory=dict)  # run.json
    params: list[Any] = field(default_factory=list)  # the trainable parameters (clipping)
    _plans: dict[int, list[list[int]]] = field(default_factory=dict)

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def plan(self, epoch: int) -> list[list[int]]:
        """This epoch's batches (example indices), deterministic per (seed, epoch)."""
        if epoch not in self._plans:
            from tuneloop.train.collate import plan_batches

            t = self.config.training
            self._plans = {epoch: plan_batches(self.lengths, batch_size=t.batch_size,
                                               seed=t.seed, epoch=epoch)}
        return self._plans[epoch]

    def micro_batches(self, batch: list[int]) -> list[list[int]]:
        """One batch of the plan as the packed micro-batches that run (the token budget)."""
        from tuneloop.train.collate import split_by_tokens

        return split_by_tokens(batch, self.lengths, self.token_budget)


# ------------------------------------------------------------------------------------ recipe


def train(config: TrainConfig, *, resume: bool = False, force_resume: bool = False,
          output_dir: str | Path | None = None, progress: bool | None = None,
          hooks: TrainHooks | None = None) -> TrainResult:
    """Train per `config` into a run directory; resume from its latest checkpoint if asked."""
    from accelerate.utils import set_seed

    hooks = hooks or TrainHooks()
    _check_hooks(config, hooks)
    started = time.time()
    accelerator, run_dir, trackers = setup.start_processes(
        config, Path(output_dir) if output_dir else None, resume)
    if resume:
        _refuse_finished_restart(run_dir)
    set_seed(config.training.seed)
    run = _build(config, accelerator, run_dir, hooks, resume, progress)
    _start_run_dir(run, trackers, started)
    state = TrainState(first_bad=_zero(run, "long"), grad_norm=_zero(run),
                       guard=_make_guard(run))
    # From here on every way out ends the run honestly: run.json + index say completed, failed
    # or interrupted, with the step and the reason (R4, R8); SIGTERM stops after a step.
    signals = _Signals().install()
    try:
        _begin(run, state, resume=resume, force_resume=force_resume)
        window = _new_window(run)
        with optional_progress(run.show, "train") as bar:
            task = bar.add_task("train", total=run.total_steps, completed=state.step,
                                info="") if bar else None
            while state.step < run.total_steps and not (state.stopped_early or state.pruned):
                _train_step(run, state, window)
                if hooks.after_step is not None:
                    hooks.after_step(state.step)
                if state.step % config.logging.interval == 0 or state.step == run.total_steps:
                    _log_window(run, state, window, bar, task)
                    window = _new_window(run)
                if config.eval.interval and state.step % config.eval.interval == 0:
                    _evaluate(run, state, bar)
                    _maybe_stop_early(run, state)
                if config.save.interval and state.step % config.save.interval == 0:
                    _save(run, state, bar)
                if bar:
                    bar.update(task, completed=state.step)
                if signals.stop_requested(run):
                    _stop_on_signal(run, state, signals.name, bar)
        _check_finite(run, state)
        if run.data.eval and state.last_eval_step != state.step:
            _evaluate(run, state, bar=None)
        return _finish(run, state, trackers, started)
    except BaseException as exc:
        err = _peer_failure(run, state, exc)
        _record_failure(run, state, err)
        if err is exc:
            raise
        raise err from exc
    finally:
        signals.restore()


def _begin(run: Run, state: TrainState, *, resume: bool, force_resume: bool) -> None:
    """Resume if asked, write run.json (running), evaluate the base model if configured."""
    config = run.config
    restored = resume and _resume(run, state, force=force_resume or config.resume.force)
    if resume and not restored:
        _say_restart(run)
    if run.main:
        rundir.write_run_info(run.dir, run.info)
    if config.eval.at_start and not restored:
        res = _evaluate(run, state, bar=None)  # step 0: the base model's loss, the number to beat
        state.baseline_eval_loss = res.loss if res is not None else None
        # the baseline is not a checkpoint (nor a trained model: a sweep compares those)
        state.best.eval_loss, state.best.eval_step, state.bad_evals = None, None, 0


# ------------------------------------------------------------------------------------- setup


def _check_hooks(config: TrainConfig, hooks: TrainHooks) -> None:
    if config.eval.suites and hooks.evaluate_checkpoint is None:
        raise ConfigError(
            "eval.suites is set but nothing runs them: suites at each save are wired by "
            "`tuneloop train` (the library loop does not import the evaluators)",
            fix="run `tuneloop train`, call tuneloop.commands.train.train_with_suites, or pass "
                "hooks=TrainHooks(evaluate_checkpoint=...)")


def _build(config: TrainConfig, accelerator: Any, run_dir: Path, hooks: TrainHooks,
           resume: bool, progress: bool | None) -> Run:
    """Objective, model, data, optimizer and schedule, prepared for the processes."""
    objective = make_objective(config)
    # a file type no reader takes is refused before the model loads
    check_sources([*config.data.train, *config.data.eval], config.data.format)
    # A bad model ref or unusable data must not leave an empty run directory behind.
    with setup.remove_if_still_empty(run_dir, enabled=accelerator.is_main_process and not resume):
        model, tokenizer, renderer = setup.load_policy(config, accelerator.device)
        data = objective.prepare_data(config, renderer)
    model = setup.make_trainable(model, config)
    objective.setup(model, data, ObjectiveContext(config=config, accelerator=accelerator,
                                                  run_dir=run_dir, tokenizer=tokenizer,
                                                  renderer=renderer))
    model = setup.speed_up(model, config)
    t, world = config.training, accelerator.num_processes
    micro_per_step = t.gradient_accumulation * world
    run = Run(config=config, accelerator=accelerator, objective=objective, model=model,
              optimizer=None, scheduler=None, tokenizer=tokenizer, renderer=renderer, data=data,
              lengths=objective.lengths(data.train), micro_per_step=micro_per_step,
              token_budget=token_budget(t, accelerator.device.type),
              total_steps=0, data_id=data.fingerprint["id"],
              config_fp=config_fingerprint(config, world_size=world),
              dir=rundir.RunDir(run_dir),
              metrics=rundir.Metrics(run_dir, accelerator, enabled=accelerator.is_main_process),
              hooks=hooks, show=bool(config.logging.progress if progress is None else progress)
              and accelerator.is_main_process)
    steps_per_epoch = math.ceil(len(run.plan(0)) / micro_per_step)
    run.total_steps = t.max_steps or max(1, math.ceil(t.epochs * steps_per_epoch))
    optimizer = setup.make_optimizer(model, config)
    run.scheduler = setup.make_scheduler(optimizer, config, run.total_steps)
    # The scheduler is deliberately not prepared: accelerate would step it once per process.
    run.model, run.optimizer = accelerator.prepare(model, optimizer)
    run.model.train()
    run.params = [p for p in run.model.parameters() if p.requires_grad]
    return run


def _start_run_dir(run: Run, trackers: list[str], started: float) -> None:
    """config.yaml, fingerprint, run.json + index row (status running), trackers, drop notice."""
    config, data = run.config, run.data
    run.info = {
        "name": config.name, "status": "running", "model": config.model, "method": config.method,
        "data_fingerprint": run.data_id, "config_fingerprint": run.config_fp,
        "world_size": run.world, "total_steps": run.total_steps, "steps": 0,
        "dropped": data.dropped, "train_examples": len(data.train),
        "eval_examples": len(data.eval),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        # Peak memory depends on it (tuneloop/allocator.py), so the run says which it had.
        "allocator": allocator.active(),
    }
    if run.main:  # MFU: FLOPs per token and the device's peak (train/flops.py)
        from tuneloop.train.flops import run_figures

        run.info.update(run_figures(run.model, run.lengths, config.method, run.accelerator.device,
                                    run.accelerator.mixed_precision))
        run.info.update(train_tokens=0, train_seconds=0.0)
    if run.main:
        rundir.write_config(run.dir, config.to_yaml())
        rundir.write_fingerprint(run.dir, data.fingerprint)
        # Listed from the start, so `tuneloop runs` shows running and failed runs too.
        setup.record_in_index(run.dir.path, config, run.info)
        if trackers:
            run.accelerator.project_configuration.logging_dir = str(run.dir.path)
    if trackers:
        run.accelerator.init_trackers("tensorboard", config=setup.flat_hparams(config))
    if data.dropped and run.main:  # R13: said before training starts, and kept in run.json
        from rich.console import Console

        Console(stderr=True).print(
            f"[yellow]dropped examples:[/] {data.dropped} (counts by reason; see run.json)")


def _zero(run: Run, dtype: str = "float") -> Any:
    import torch

    return torch.zeros((), dtype=getattr(torch, dtype), device=run.accelerator.device)


def _new_window(run: Run) -> Window:
    return Window(loss=_zero(run, "float64"), units=_zero(run, "float64"))


# -------------------------------------------------------------------------------------- step


def _train_step(run: Run, state: TrainState, window: Window) -> None:
    """One optimizer step over `micro_per_step` batches of the plan, each run as one or more
    packed micro-batches (R27, R28)."""
    import torch

    acc, model, objective = run.accelerator, run.model, run.objective
    world, rank = run.world, acc.process_index
    plan = run.plan(state.epoch)
    group = plan[state.position:state.position + run.micro_per_step]
    state.position += len(group)
    batches = [objective.collate([run.data.train[i] for i in micro])
               for batch in group[rank::world] for micro in run.micro_batches(batch)]
    n_step = torch.tensor(float(sum(b.n_units for b in batches)), dtype=torch.float64,
                          device=acc.device)
    if world > 1:
        n_step = acc.reduce(n_step, reduction="sum")
    # Scale so that the gradient (averaged over processes by DDP) is sum(loss)/n_step.
    scale = world / n_step.clamp_min(1.0)
    # A rank without a micro-batch in a short last step still joins the gradient sync.
    work = [(b, 1.0) for b in batches] or [
        (objective.collate([run.data.train[i] for i in run.micro_batches(group[0])[0]]), 0.0)]
    step_loss = torch.zeros((), dtype=torch.float64, device=acc.device)
    extras: dict[str, Any] = {}
    for j, (batch, weight) in enumerate(work):
        sync = j == len(work) - 1
        with (nullcontext() if sync else acc.no_sync(model)), acc.autocast():
            out = objective.loss(model, batch)
            acc.backward(out.loss_sum * (scale * weight).to(out.loss_sum.dtype))
        step_loss += out.loss_sum.detach().double() * weight
        for name, value in out.metrics.items():
            extras[name] = extras.get(name, 0.0) + torch.as_tensor(
                value.detach() if isinstance(value, torch.Tensor) else value,
                dtype=torch.float64, device=acc.device) * weight
        if weight:
            window.real_tokens += batch.n_real_tokens
            window.positions += batch.n_positions
    finite = _apply_step(run, state, step_loss)
    state.step += 1
    zero = torch.zeros_like(step_loss)
    window.loss += torch.where(finite, step_loss, zero)
    window.units += torch.where(finite, n_step / world, zero)
    for name, value in extras.items():
        window.extras[name] = window.extras.get(name, zero) + torch.where(finite, value, zero)
    if state.position >= len(plan):
        state.epoch, state.position = state.epoch + 1, 0


def _apply_step(run: Run, state: TrainState, step_loss: Any) -> Any:
    """Clip, check finiteness per nan_policy, step optimizer + schedule; the finite flag."""
    import torch

    acc, t = run.accelerator, run.config.training
    fp16 = acc.mixed_precision == "fp16"
    state.grad_norm = acc.clip_grad_norm_(run.params, t.max_grad_norm or float("inf"))
    finite = torch.isfinite(step_loss)
    if not fp16:
        finite = finite & torch.isfinite(state.grad_norm)
    if t.nan_policy == "skip":
        ok = bool(acc.reduce(finite.float(), reduction="sum") == run.world) \
            if run.world > 1 else bool(finite)  # one sync per step, only in skip mode
        if ok:
            run.optimizer.step()
        else:
            state.skipped += 1
            run.metrics.log("skipped", state.step + 1, reason="nan_or_inf")
    else:
        state.first_bad = torch.where((state.first_bad == 0) & ~finite,
                                      torch.tensor(state.step + 1, device=acc.device),
                                      state.first_bad)
        run.optimizer.step()
    if fp16 and acc.optimizer_step_was_skipped:
        state.overflows += 1
    state.lr_used = run.scheduler.get_last_lr()[0]  # the LR this step was taken with
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return finite


def _check_finite(run: Run, state: TrainState) -> None:
    """Raise if any process saw a NaN/inf since the last check (one sync, R8)."""
    bad = state.first_bad.reshape(1)
    if run.world > 1:
        bad = run.accelerator.gather(bad)
    nonzero = [int(b) for b in bad.tolist() if b]
    if nonzero:
        raise TrainingError(
            f"loss or gradient became NaN/inf at step {min(nonzero)}; training stopped and "
            "no checkpoint was written after it", where=str(run.dir.path),
            fix="lower training.learning_rate, use precision bf16/fp32, check the data, or "
                "set training.nan_policy: skip")


def _log_window(run: Run, state: TrainState, window: Window, bar: Any, task: Any) -> None:
    """One `train` row: window means per unit (the only host sync of ordinary steps)."""
    import torch

    if run.config.training.nan_policy == "stop":
        _check_finite(run, state)
    names = list(window.extras)
    totals = torch.stack([window.loss, window.units, *(window.extras[n] for n in names)])
    if run.world > 1:
        totals = run.accelerator.reduce(totals, reduction="sum")
    loss_sum, units, *extra_sums = totals.tolist()
    elapsed = max(time.time() - window.t0, 1e-9)
    state.last_train_loss = loss_sum / units if units else float("nan")
    tokens_per_s = window.real_tokens * run.world / elapsed
    mfu = _mfu(run, tokens_per_s)
    if run.main:
        run.info["train_tokens"] += window.real_tokens * run.world
        run.info["train_seconds"] += elapsed
    run.metrics.log("train", state.step, loss=state.last_train_loss, lr=state.lr_used,
                    grad_norm=float(state.grad_norm), tokens_per_s=tokens_per_s, mfu=mfu,
                    real_token_share=window.real_tokens / max(window.positions, 1),
                    epoch=state.epoch, skipped_steps=state.skipped,
                    fp16_overflows=state.overflows,
                    **{n: s / units if units else float("nan")
                       for n, s in zip(names, extra_sums, strict=True)})
    _on_divergence(run, state, state.guard.observe_train(
        state.step, state.last_train_loss, float(state.grad_norm)))
    if bar:
        util = f" · MFU {mfu:.0%}" if mfu is not None else ""
        bar.update(task, info=f"loss {state.last_train_loss:.4f} · {tokens_per_s:.0f} tok/s{util}")


def _mfu(run: Run, tokens_per_s: float) -> float | None:
    """Model-FLOPs utilisation of this process's device (train/flops.py); None off the main."""
    from tuneloop.train.flops import mfu

    info = run.info
    if "flops_per_token" not in info:
        return None
    # tokens/s counts every process; each process has its own device with its own peak.
    return mfu(tokens_per_s / run.world, info["flops_per_token"], info["peak_flops"])


# ------------------------------------------------------------------------- evaluate and save


def _evaluate(run: Run, state: TrainState, bar: Any) -> EvalResult | None:
    """The objective's held-out evaluation: an `eval` row, best eval loss, patience count."""
    if not run.data.eval:
        return None
    state.last_eval_step = state.step
    _check_finite(run, state)
    res = run.objective.evaluate(run.model, run.data.eval, batch_size=run.config.eval.batch_size,
                                 accelerator=run.accelerator,
                                 progress=bar if bar is not None else False)
    run.metrics.log("eval", state.step, eval_loss=res.loss, **res.metrics)
    _on_divergence(run, state, state.guard.observe_eval(state.step, res.loss))
    stop = run.hooks.on_eval is not None and run.hooks.on_eval(state.step, res.loss)
    if stop and state.step < run.total_steps:
        state.pruned = True
        run.metrics.log("pruned", state.step, eval_loss=res.loss)
    best = state.best
    if best.eval_loss is None or res.loss < best.eval_loss:
        improved = best.eval_loss is None or (
            best.eval_loss - res.loss > run.config.eval.early_stopping_min_delta)
        best.eval_loss, best.eval_step = res.loss, state.step
        state.bad_evals = 0 if improved else state.bad_evals + 1
    else:
        state.bad_evals += 1
    state.last_eval = res
    return res


def _make_guard(run: Run) -> DivergenceGuard:
    """The divergence guard; the uniform-loss rule only for token-level losses (SFT, CPT)."""
    uniform = None
    if run.config.objective == "sft":
        uniform = uniform_loss_of(run.accelerator.unwrap_model(run.model,
                                                               keep_torch_compile=False))
    return DivergenceGuard(uniform_loss=uniform)


def _on_divergence(run: Run, state: TrainState, found: Divergence | None) -> None:
    """Stop (TrainingDiverged: status diverged) or warn loudly, per training.on_divergence.

    Every process sees the same reduced losses and global grad norm, so all decide alike."""
    warned = run.info.setdefault("divergence_warnings", [])
    if found is None or found.kind in {w["signal"] for w in warned}:
        return  # with warn: said once per signal, not at every later step
    t = run.config.training
    run.metrics.log("divergence", found.step, signal=found.kind, reason=found.reason,
                    action=t.on_divergence)
    if t.on_divergence == "stop":
        raise diverged_error(found, learning_rate=t.learning_rate, where=str(run.dir.path))
    warned.append({"step": found.step, "signal": found.kind, "reason": found.reason})
    if run.main:
        import sys

        print(f"WARNING: training looks diverged at step {found.step}: {found.reason}; going "
              "on (training.on_divergence: warn); a lower training.learning_rate usually fixes "
              "it", file=sys.stderr)


def _maybe_stop_early(run: Run, state: TrainState) -> None:
    patience = run.config.eval.early_stopping_patience
    if patience and state.bad_evals >= patience:
        state.stopped_early = True
        run.metrics.log("early_stop", state.step, bad_evals=state.bad_evals)


def _save(run: Run, state: TrainState, bar: Any) -> None:
    """Evaluate (eval loss, checkpoint hook), write a checkpoint collectively, rotate (R2-R5)."""
    _check_finite(run, state)
    res = state.last_eval if state.last_eval_step == state.step else _evaluate(run, state, bar)
    metric = res.loss if res is not None else None
    if run.hooks.evaluate_checkpoint is not None:
        scores = run.hooks.evaluate_checkpoint(
            run.accelerator.unwrap_model(run.model, keep_torch_compile=False), run.tokenizer,
            run.renderer)
        for name, rate in scores.items():
            run.metrics.log("suite", state.step, suite=name, pass_rate=rate)
        if scores and run.config.eval.best_metric == "suite":
            metric = -sum(scores.values()) / len(scores)  # lower is better throughout
    name = ckpt.step_dir_name(state.step)
    best = state.best
    if metric is not None and (best.metric is None or metric < best.metric):
        best.metric, best.checkpoint = metric, name
    saved = {"epoch": state.epoch, "position": state.position, "data_fingerprint": run.data_id,
             "config_fingerprint": run.config_fp, "micro_per_step": run.micro_per_step,
             "world_size": run.world, "best": asdict(best), "bad_evals": state.bad_evals,
             "skipped_steps": state.skipped, "metric": metric,
             "baseline_eval_loss": state.baseline_eval_loss}
    _write_checkpoint(run, state.step, saved)
    if run.main:
        keep = run.config.save.keep_best and best.checkpoint
        ckpt.rotate(run.dir.checkpoints, keep_last=run.config.save.keep_last,
                    best=run.dir.checkpoints / best.checkpoint if keep else None)
    run.metrics.log("checkpoint", state.step, path=name, metric=metric)


def _trainable(model: Any) -> dict[str, Any]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _write_checkpoint(run: Run, step: int, saved: dict) -> Path:
    """Collective save: every rank gives its RNG state, rank 0 writes, all learn the outcome
    (so a failed write on rank 0 never leaves other ranks waiting forever, R27)."""
    from accelerate.utils import broadcast_object_list, gather_object

    acc = run.accelerator
    rngs = gather_object([ckpt.capture_rng()]) if run.world > 1 else [ckpt.capture_rng()]
    outcome: list[Any] = [None]  # broadcast_object_list's in/out list
    if run.main:
        try:
            weights = _trainable(acc.unwrap_model(run.model, keep_torch_compile=False))
            optimizer = run.optimizer.state_dict()
            _warn_if_no_space(run, step, weights, optimizer)
            outcome[0] = str(ckpt.save_checkpoint(
                run.dir.checkpoints, step, weights=weights,
                optimizer=optimizer, scheduler=run.scheduler.state_dict(),
                rng={"ranks": rngs}, state=saved))
        except CheckpointError as exc:
            outcome[0] = exc
        except Exception as exc:  # other ranks must learn of it too, or they wait forever
            if run.world == 1:
                raise
            outcome[0] = CheckpointError(f"could not write checkpoint step {step}: "
                                         f"{type(exc).__name__}: {exc}")
    if run.world > 1:
        broadcast_object_list(outcome, from_process=0)
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return Path(outcome[0])


def _warn_if_no_space(run: Run, step: int, weights: dict, optimizer: dict) -> None:
    """Say before a save that it will likely not fit on the disk (R4); the save still tries."""
    warning = ckpt.check_space(run.dir.checkpoints, weights, optimizer)
    if warning is None:
        return
    import sys

    print(f"warning: step {step}: {warning}", file=sys.stderr)
    try:
        run.metrics.log("disk_space", step, warning=warning)
    except OSError:
        pass  # the disk is full already; the save below reports it


def _say_restart(run: Run) -> None:
    """--resume found no checkpoint: the run starts over, and says so (stderr, metrics, run.json)."""
    run.info["restarted"] = True
    run.metrics.log("restart", 0, reason="no complete checkpoint")
    if run.main:
        import sys

        print(f"resume: no complete checkpoint in {run.dir.checkpoints} (the run stopped before "
              "its first save, or never ran); starting from step 0", file=sys.stderr)


def _resume(run: Run, state: TrainState, *, force: bool) -> bool:
    """Restore weights/optimizer/scheduler/RNG and the state from the latest complete
    checkpoint (R1, R2, R6, R28); False when there is none and the run is to start over."""
    import torch

    acc = run.accelerator
    latest = ckpt.find_latest_complete(run.dir.checkpoints)
    if latest is None:
        # "Resume or start": a job killed before its first save restarts with the same command
        # (a finished run was refused before anything was written: _refuse_finished_restart).
        return False
    loaded = ckpt.load_checkpoint(latest)
    saved = loaded.state
    if saved.get("micro_per_step") != run.micro_per_step:
        raise CheckpointError(
            f"the checkpoint was written with {saved.get('micro_per_step')} micro-batches per "
            f"step (gradient_accumulation x processes) and this launch has {run.micro_per_step}",
            where=str(latest),
            fix="keep gradient_accumulation x number of processes equal to the original run "
                f"(e.g. --set training.gradient_accumulation="
                f"{max(1, saved.get('micro_per_step', 1) // run.world)})")
    if not force:
        for what, old, new in (("data", saved.get("data_fingerprint"), run.data_id),
                               ("config", saved.get("config_fingerprint"), run.config_fp)):
            if old != new:
                raise CheckpointError(
                    f"the {what} changed since the checkpoint was written "
                    f"(fingerprint {str(old)[:12]} → {new[:12]}); resuming would not continue "
                    "the same run", where=str(latest),
                    fix="restore the original data/config, or pass --force-resume")
    params = _trainable(acc.unwrap_model(run.model, keep_torch_compile=False))
    if set(params) != set(loaded.weights):
        raise CheckpointError("checkpoint weights do not match the model's trainable parameters",
                              where=str(latest), fix="resume with the same model and method")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(loaded.weights[name].to(p.device, p.dtype))
    run.optimizer.load_state_dict(loaded.optimizer)
    run.scheduler.load_state_dict(loaded.scheduler)
    ranks = loaded.rng["ranks"]
    # Same world size: each rank continues its own RNG stream; otherwise rank 0's stream.
    ckpt.restore_rng(ranks[acc.process_index] if len(ranks) == run.world else ranks[0])
    state.step, state.epoch, state.position = saved["step"], saved["epoch"], saved["position"]
    state.best = Best(**saved["best"])
    state.bad_evals, state.skipped = saved["bad_evals"], saved["skipped_steps"]
    state.baseline_eval_loss = saved.get("baseline_eval_loss")  # absent before it was saved
    state.resumed_from = state.step
    run.metrics.log("resume", state.step, checkpoint=str(latest))
    return True


# A run in one of these states has its model/ written: a restart would replace it.
_FINISHED = ("completed", "stopped_early", "pruned")


def _refuse_finished_restart(run_dir: Path) -> None:
    """--resume of a finished run without checkpoints would train it over: refuse, before
    anything in the run directory (run.json, the index row) is touched."""
    folder = rundir.RunDir(run_dir)
    if ckpt.find_latest_complete(folder.checkpoints) is not None:
        return
    status = rundir.read_run_info(folder, []).get("status")
    if status in _FINISHED:
        raise CheckpointError(
            f"nothing to resume: the run already {status.replace('_', ' ')} and has no complete "
            "checkpoint", where=str(run_dir),
            fix="set save.interval so checkpoints are written, or start a new run")


# ------------------------------------------------------------------------------------ finish


class _Signals:
    """SIGTERM (what cluster schedulers send before a kill) asks the loop to stop after the
    current step: it saves a checkpoint if saving is configured and exits resumable. SIGINT
    keeps Python's KeyboardInterrupt. Handlers are restored on exit; outside the main thread
    (where signals cannot be caught) nothing is installed."""

    def __init__(self) -> None:
        self.name: str | None = None
        self._installed = False
        self._previous: Any = None

    def install(self) -> _Signals:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_signal)
            self._installed = True
        return self

    def restore(self) -> None:
        import signal

        if self._installed:
            signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)
            self._installed = False

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.name = "SIGTERM"

    def stop_requested(self, run: Run) -> bool:
        """True on every process once any process got the signal (one reduce per step, DDP)."""
        if run.world == 1:
            return self.name is not None
        flag = _zero(run)
        flag += float(self.name is not None)
        if run.accelerator.reduce(flag, reduction="sum").item() > 0:
            self.name = self.name or "SIGTERM"
            return True
        return False


def _stop_on_signal(run: Run, state: TrainState, name: str | None, bar: Any) -> None:
    """Save the finished step (if saving is configured) and raise TrainingInterrupted."""
    interval = run.config.save.interval
    if interval and state.step % interval != 0:  # not saved by the loop already
        _save(run, state, bar)
    latest = ckpt.find_latest_complete(run.dir.checkpoints) if run.main else None
    where = (f"checkpoint {latest.name} holds step {ckpt.checkpoint_step(latest)}" if latest
             else "no checkpoint was saved (save.interval is 0)")
    raise TrainingInterrupted(
        f"stopped by {name} after step {state.step}; {where}",
        where=str(run.dir.path),
        fix="run the same command with --resume to continue" if latest
            else "set save.interval so a stopped run can resume")


def _peer_failure(run: Run, state: TrainState, exc: BaseException) -> BaseException:
    """A collective that failed because another process died (killed, out of memory) is not a
    bug in this one: say so, and how to continue (R27)."""
    if run.world == 1 or not isinstance(exc, RuntimeError):
        return exc
    first = _first_line(exc) or type(exc).__name__
    latest = ckpt.find_latest_complete(run.dir.checkpoints) if run.main else None
    return TrainingError(
        f"another training process stopped during step {state.step + 1} ({first[:200]})"
        + (f"; checkpoint {latest.name} is intact" if latest else ""),
        where=str(run.dir.path),
        fix="check the other processes' logs (killed? out of memory?), then relaunch the same "
            "command with --resume")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _record_failure(run: Run, state: TrainState, exc: BaseException) -> None:
    """run.json + index row: failed or interrupted, with the reason and the step (R4, R8).

    Never raises (the original error is what the user must see); our partial checkpoint
    directories are gone by now (save_checkpoint removes its own on any exception)."""
    if isinstance(exc, TrainingInterrupted):
        status, reason = "interrupted", exc.what
    elif isinstance(exc, TrainingDiverged):
        status, reason = "diverged", exc.what
    elif isinstance(exc, TuneloopError):
        status, reason = "failed", exc.what
    elif isinstance(exc, KeyboardInterrupt):
        status, reason = "interrupted", f"interrupted (Ctrl-C / SIGINT) at step {state.step}"
    elif isinstance(exc, SystemExit):
        status, reason = "interrupted", f"exited ({exc.code}) at step {state.step}"
    else:
        status, reason = "failed", f"{type(exc).__name__}: {_first_line(exc)}".rstrip(": ")
    run.info.update({"status": status, "steps": state.step, "failed_at_step": state.step,
                     "error": reason})
    if not run.main:
        return
    try:
        rundir.write_run_info(run.dir, run.info)
        setup.record_in_index(run.dir.path, run.config, run.info)
    except Exception as record_exc:  # noqa: BLE001 - a full disk can refuse even this; keep the cause
        import sys

        print(f"warning: could not record the {status} status in {run.dir.run_info}: "
              f"{record_exc}", file=sys.stderr)


def _finish(run: Run, state: TrainState, trackers: list[str], started: float) -> TrainResult:
    """Save RUN/model, complete run.json and the index row, close trackers."""
    from tuneloop.train.save import save_final_model

    acc, best = run.accelerator, state.best
    if run.main:
        save_final_model(acc.unwrap_model(run.model, keep_torch_compile=False), run.tokenizer,
                         run.renderer, run.dir.path, base_model=run.config.model,
                         method=run.config.method, data_format=run.data.format)
    acc.wait_for_everyone()
    final_eval = state.last_eval.loss if state.last_eval else None
    base = state.baseline_eval_loss
    # lr 1e-12 leaves the held-out loss bit-identical: finished, but nothing was learned
    unmoved = (base is not None and final_eval is not None and state.step > 0
               and abs(final_eval - base) <= 1e-7 * max(1.0, abs(base)))
    run.info.update({
        "status": "pruned" if state.pruned else
                  "stopped_early" if state.stopped_early else "completed", "steps": state.step,
        "best_eval_loss": best.eval_loss, "best_eval_step": best.eval_step,
        "baseline_eval_loss": base, "nothing_learned": unmoved,
        "best_checkpoint": best.checkpoint,
        "final_train_loss": state.last_train_loss, "final_eval_loss": final_eval,
        "skipped_steps": state.skipped, "fp16_overflows": state.overflows,
        "resumed_from": state.resumed_from, "seconds": round(time.time() - started, 2),
    })
    if run.main and run.info.get("train_seconds"):  # the whole run's real tokens/s and MFU
        tps = run.info["train_tokens"] / run.info["train_seconds"]
        run.info.update(tokens_per_s=round(tps, 2), mfu=_mfu(run, tps))
    if run.main:
        rundir.write_run_info(run.dir, run.info)
        setup.record_in_index(run.dir.path, run.config, run.info)
    if trackers:
        acc.end_training()
    return TrainResult(
        run_dir=run.dir.path, steps=state.step, best_eval_loss=best.eval_loss,
        final_train_loss=state.last_train_loss, final_eval_loss=final_eval,
        best_checkpoint=run.dir.checkpoints / best.checkpoint if best.checkpoint else None,
        model_dir=run.dir.model, stopped_early=state.stopped_early,
        skipped_steps=state.skipped, dropped=run.data.dropped, resumed_from=state.resumed_from,
        pruned=state.pruned, baseline_eval_loss=base, best_eval_step=best.eval_step,
        nothing_learned=unmoved)
