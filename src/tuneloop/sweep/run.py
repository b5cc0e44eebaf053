"""`tuneloop sweep`: an Optuna study whose trials are ordinary training runs.

Each trial samples the `--param` values (TPE, seeded), trains `CONFIG --set ... --set <values>`
into SWEEP/trial-NNN/ (an ordinary run dir, in the index as usual) and reports every held-out
eval loss to Optuna through `TrainHooks.on_eval`; when the median pruner says the trial is worse
than the median of completed trials at that step, the run ends there with status `pruned`.
A completed trial's value is its best eval loss (minimised) or its pass rate on a suite
(maximised). Every trial is recorded in the index (`index.record_trial`) and in SWEEP/sweep.json;
the best trial's full config is SWEEP/best.yaml and the trials side by side SWEEP/report.html.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneloop import rundir
from tuneloop.errors import (
    ConfigError,
    TrainingError,
    TrainingInterrupted,
    TuneloopError,
    UsageError,
)
from tuneloop.index import record_trial
from tuneloop.sweep.params import Param, as_override, format_values, parse_params
from tuneloop.train.config import TrainConfig, load_config
from tuneloop.workspace import new_run_dir, workspace_home

METRIC_SYNTAX = "pass --metric eval_loss or --metric suite:SUITE.yaml"


@dataclass(frozen=True)
class Metric:
    """What a completed trial is scored by."""

    name: str  # "eval_loss" or "suite:<path>"
    suite: Path | None = None

    @property
    def direction(self) -> str:
        """Optuna's direction: a loss is minimised, a pass rate maximised."""
        return "maximize" if self.suite is not None else "minimize"


def parse_metric(text: str) -> Metric:
    """`eval_loss` or `suite:FILE` → Metric (the suite file must exist)."""
    if text == "eval_loss":
        return Metric("eval_loss")
    kind, _, path = text.partition(":")
    if kind == "suite" and path:
        if not Path(path).is_file():
            raise UsageError(f"--metric {text}: suite file not found",
                             fix="pass the path of a suite YAML file")
        return Metric(f"suite:{path}", Path(path))
    raise UsageError(f"--metric {text!r} is not a metric", fix=METRIC_SYNTAX)


@dataclass
class Trial:
    """One trial as sweep.json and the CLI report it."""

    number: int
    params: dict[str, Any]
    state: str  # complete | pruned | failed
    value: float | None = None
    run_dir: str | None = None
    steps: int | None = None
    best_eval_loss: float | None = None
    pruned_at_step: int | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass
class SweepResult:
    """What a sweep wrote: its directory, every trial, the best one and the files."""

    out: Path
    metric: Metric
    trials: list[Trial]
    best: Trial | None
    best_config: Path | None
    sweep_json: Path
    report: Path | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class SweepOptions:
    """Study settings (the CLI's options); defaults are Optuna's own."""

    trials: int = 10
    seed: int = 0
    startup_trials: int = 10  # TPE: trials sampled at random before it models the results
    prune: bool = True
    prune_startup_trials: int = 5  # MedianPruner: completed trials before any pruning
    prune_warmup_steps: int = 0  # MedianPruner: no pruning at training steps below this


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _sweep_dir(out: str | Path | None, name: str) -> Path:
    """A new directory under <home>/sweeps, or `out` if it is new or empty (never overwritten)."""
    if out is None:
        return new_run_dir(name, parent=workspace_home() / "sweeps")
    path = Path(out).resolve()
    if path.is_file() or (path.is_dir() and any(path.iterdir())):
        raise UsageError(f"{path} is not empty; a sweep never writes over other files",
                         fix="pass a new or empty --out directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _warnings(base: TrainConfig, metric: Metric, options: SweepOptions) -> list[str]:
    """What would make pruning do nothing, said before the first trial."""
    out = []
    if not options.prune:
        return out
    if base.eval.interval is None:
        out.append("eval.interval is not set: a trial evaluates only at its end, so no trial "
                   "can be pruned early (--set eval.interval=N)")
    if options.trials <= options.prune_startup_trials:
        out.append(f"{options.trials} trial(s) and --prune-startup-trials "
                   f"{options.prune_startup_trials}: no trial can be pruned")
    return out


def _check_eval_data(base: TrainConfig, metric: Metric, options: SweepOptions) -> None:
    if base.data.eval or base.data.eval_fraction > 0:
        return
    if metric.suite is None or options.prune:
        raise ConfigError(
            "the sweep needs a held-out eval loss (the eval_loss metric and pruning use it) "
            "but the config has no eval data (data.eval empty, data.eval_fraction 0)",
            fix="--set data.eval_fraction=0.1, or with --metric suite:FILE pass --no-prune")


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _pruning_reporter(trial: Any, sign: float, pruned_at: list[int]) -> Callable[[int, float], bool]:
    """TrainHooks.on_eval for one trial: report each eval loss at its step, ask the pruner."""

    def on_eval(step: int, eval_loss: float) -> bool:
        if step == 0:
            return False  # eval.at_start: the base model's loss, the same for every trial
        # A maximised metric: the curve is reported negated, so that for the pruner, as for
        # the study, higher is better.
        trial.report(sign * eval_loss, step)
        if trial.should_prune():
            pruned_at.append(step)
            return True
        return False

    return on_eval


def _score(metric: Metric, result: Any, suite: Any) -> float:
    """A completed trial's value: its best eval loss, or its model's pass rate on the suite."""
    if metric.suite is None:
        value = _finite(result.best_eval_loss)
        if value is None:
            raise TrainingError(f"the run has no finite eval loss ({result.best_eval_loss})",
                                where=str(result.run_dir),
                                fix="give the config held-out data (data.eval_fraction)")
        return value
    from tuneloop.eval.suite_run import run_suite

    res, _ = run_suite(suite, result.run_dir, device=_device())
    return float(res.pass_rate)


def _write_sweep_json(out: Path, config_path: str | Path, overrides: list[str],
                      params: list[Param], metric: Metric, options: SweepOptions,
                      trials: list[Trial], best: Trial | None) -> Path:
    path = out / "sweep.json"
    rundir.write_json(path, {
        "config": str(Path(config_path).resolve()), "overrides": overrides,
        "params": [p.to_json() for p in params], "metric": metric.name,
        "direction": metric.direction, **asdict(options),
        "trials": [asdict(t) for t in trials],
        "best": best.number if best is not None else None,
    })
    return path


def _write_best_config(out: Path, config_path: str | Path, overrides: list[str],
                       best: Trial, metric: Metric) -> Path:
    """SWEEP/best.yaml: the full resolved config with the best trial's values."""
    config = load_config(config_path, [*overrides, *(as_override(k, v)
                                                    for k, v in best.params.items())])
    header = (f"# Best trial {best.number} of the sweep in {out} ({metric.name} = "
              f"{best.value:.6g}): {format_values(best.params)}\n# Train it with: tuneloop train {out / 'best.yaml'}\n")
    path = out / "best.yaml"
    rundir.write_atomic(path, header + config.to_yaml())
    return path


def _record(out: Path, trial: Trial, metric: Metric, index: Any) -> None:
    record_trial(out, trial.number, params=trial.params, state=trial.state, value=trial.value,
                 run_dir=trial.run_dir, steps=trial.steps, index=index,
                 extra={"metric": metric.name, "direction": metric.direction,
                        "best_eval_loss": trial.best_eval_loss,
                        "pruned_at_step": trial.pruned_at_step, "error": trial.error,
                        "seconds": trial.seconds})


def run_sweep(config_path: str | Path, param_specs: list[str] | tuple[str, ...], *,
              metric: str, options: SweepOptions | None = None, out: str | Path | None = None,
              overrides: list[str] | tuple[str, ...] = (), progress: bool | None = None,
              train_fn: Callable[..., Any] | None = None,
              echo: Callable[[str], None] | None = None,
              index: Any = None) -> SweepResult:
    """Run the study; write SWEEP/trial-NNN/, sweep.json, best.yaml, report.html.

    `train_fn(config, output_dir=, progress=, hooks=)` trains one trial (default
    tuneloop.train.train; `tuneloop sweep` passes the one that also runs eval.suites).
    Raises TrainingError after writing everything if no trial completed.
    """
    import optuna

    from tuneloop.train import train as default_train
    from tuneloop.train.loop import TrainHooks

    options = options or SweepOptions()
    overrides = list(overrides)
    train_fn = train_fn or default_train
    say = echo or (lambda _text: None)
    if options.trials < 1:
        raise UsageError(f"--trials {options.trials}: a sweep needs at least one trial",
                         fix="pass --trials N with N >= 1")
    base = load_config(config_path, overrides)
    params = parse_params(param_specs, config_path, overrides)
    parsed = parse_metric(metric)
    suite = None
    if parsed.suite is not None:  # loaded now: a broken suite fails before any training
        from tuneloop.eval.suite import load_suite

        suite = load_suite(parsed.suite)
    _check_eval_data(base, parsed, options)
    warnings = _warnings(base, parsed, options)
    for w in warnings:
        say(f"warning: {w}")
    out_dir = _sweep_dir(out, base.name)

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own lines
    study = optuna.create_study(
        direction=parsed.direction,
        sampler=optuna.samplers.TPESampler(seed=options.seed,
                                           n_startup_trials=options.startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=options.prune_startup_trials,
                                           n_warmup_steps=options.prune_warmup_steps)
        if options.prune else optuna.pruners.NopPruner())
    sign = -1.0 if parsed.direction == "maximize" else 1.0
    done: list[Trial] = []
    for _ in range(options.trials):
        ot = study.ask()
        values = {p.key: p.suggest(ot) for p in params}
        trial = Trial(number=ot.number, params=values, state="failed")
        run_dir = out_dir / f"trial-{ot.number:03d}"
        say(f"trial {ot.number}: {format_values(values)}")
        started = time.time()
        pruned_at: list[int] = []
        try:
            # Named after the trial, so `tuneloop runs` and the report tell the trials apart.
            config = load_config(config_path, [
                *overrides, as_override("name", f"{base.name}-{run_dir.name}"),
                *(as_override(k, v) for k, v in values.items())])
            result = train_fn(config, output_dir=run_dir, progress=progress,
                              hooks=TrainHooks(on_eval=_pruning_reporter(ot, sign, pruned_at)))
            trial.steps, trial.best_eval_loss = result.steps, _finite(result.best_eval_loss)
            if result.pruned:
                trial.state, trial.pruned_at_step = "pruned", pruned_at[-1] if pruned_at else None
                study.tell(ot, state=optuna.trial.TrialState.PRUNED)
            else:
                trial.value = _score(parsed, result, suite)
                trial.state = "complete"
                study.tell(ot, trial.value)
        except (KeyboardInterrupt, TrainingInterrupted) as exc:
            # The whole sweep stops; the trial is still recorded, then the stop goes on.
            trial.error = str(getattr(exc, "what", "")) or "interrupted (Ctrl-C)"
            _finish_trial(study, ot, trial, run_dir, started, out_dir, parsed, index)
            done.append(trial)
            _write_sweep_json(out_dir, config_path, overrides, params, parsed, options, done,
                              None)
            raise
        except Exception as exc:  # noqa: BLE001 - one bad trial (NaN, OOM) must not end the study
            trial.error = (exc.what if isinstance(exc, TuneloopError)
                           else f"{type(exc).__name__}: {exc}").strip().splitlines()[0]
        _finish_trial(study, ot, trial, run_dir, started, out_dir, parsed, index)
        done.append(trial)
        _write_sweep_json(out_dir, config_path, overrides, params, parsed, options, done, None)
        say(_trial_line(trial, parsed))
        _free_memory()

    best = _best(done, parsed)
    best_config = (_write_best_config(out_dir, config_path, overrides, best, parsed)
                   if best is not None else None)
    sweep_json = _write_sweep_json(out_dir, config_path, overrides, params, parsed, options,
                                   done, best)
    report = _write_report(out_dir, done, index)
    result = SweepResult(out_dir, parsed, done, best, best_config, sweep_json, report, warnings)
    if best is None:
        states = {s: sum(t.state == s for t in done) for s in ("pruned", "failed")}
        first = next((t.error for t in done if t.error), None)
        raise TrainingError(
            f"no trial completed ({states['pruned']} pruned, {states['failed']} failed"
            + (f"; first error: {first}" if first else "") + ")", where=str(out_dir),
            fix="see sweep.json for each trial; widen the ranges, raise --trials, or "
                "--prune-startup-trials")
    return result


def _finish_trial(study: Any, ot: Any, trial: Trial, run_dir: Path, started: float,
                  out_dir: Path, metric: Metric, index: Any) -> None:
    """Tell Optuna a failure, fill in the run dir and time, record the trial in the index."""
    import optuna

    if trial.state == "failed":
        study.tell(ot, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    trial.run_dir = str(run_dir) if run_dir.is_dir() else None
    trial.seconds = round(time.time() - started, 2)
    _record(out_dir, trial, metric, index)


def _trial_line(trial: Trial, metric: Metric) -> str:
    if trial.state == "complete":
        what = f"{metric.name} = {trial.value:.4g}"
    elif trial.state == "pruned":
        what = f"pruned at step {trial.pruned_at_step}"
    else:
        what = f"failed: {trial.error}"
    return f"trial {trial.number}: {trial.state} after {trial.steps or 0} steps ({what})"


def _best(trials: list[Trial], metric: Metric) -> Trial | None:
    """The completed trial with the best value (the first one on a tie, as Optuna picks)."""
    complete = [t for t in trials if t.state == "complete" and t.value is not None]
    if not complete:
        return None
    pick = max if metric.direction == "maximize" else min
    return pick(complete, key=lambda t: t.value)


def _write_report(out_dir: Path, trials: list[Trial], index: Any) -> Path:
    """SWEEP/report.html: the trials section plus every trial's run (loss curves, configs)."""
    from tuneloop.report.build import write_report

    runs = [t.run_dir for t in trials
            if t.run_dir and rundir.RunDir(Path(t.run_dir)).run_info.is_file()]
    path = out_dir / "report.html"
    write_report(runs, out=path, sweep_dir=out_dir,
                 index_path=Path(index) if isinstance(index, (str, Path)) else None)
    return path


def _free_memory() -> None:
    """Drop the finished trial's model before the next loads (a GPU keeps its cache)."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
