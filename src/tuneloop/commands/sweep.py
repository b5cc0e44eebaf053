"""`tuneloop sweep`: hyperparameter search over ordinary training runs (Optuna TPE + pruning)."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add the `sweep` command to the CLI."""
    cli.add_command(sweep_command)


@click.command("sweep")
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@click.option("--param", "params", multiple=True, metavar="KEY=SPEC",
              help="A searched setting (repeatable): KEY=log:1e-5..1e-2, KEY=float:0..0.2, "
                   "KEY=int:1..3 or KEY=8,16,32.")
@click.option("--trials", default=10, show_default=True, type=click.IntRange(1),
              help="Trials (training runs) to make.")
@click.option("--metric", required=True, metavar="eval_loss|suite:SUITE.yaml",
              help="eval_loss: a trial's best eval loss (minimised); suite:FILE: its model's "
                   "pass rate on the suite (maximised).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Sampler seed: the same seed samples the same trials.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Sweep directory, new or empty (default: $TUNELOOP_HOME/sweeps/NAME-TIME).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key for every trial (repeatable), as for `train`.")
@click.option("--startup-trials", default=10, show_default=True, type=click.IntRange(0),
              help="Trials sampled at random before TPE models the results.")
@click.option("--prune/--no-prune", default=True, show_default=True,
              help="Stop a trial whose eval loss is worse than the median of completed trials "
                   "at the same step.")
@click.option("--prune-startup-trials", default=5, show_default=True, type=click.IntRange(0),
              help="Completed trials needed before any trial is pruned.")
@click.option("--prune-warmup-steps", default=0, show_default=True, type=click.IntRange(0),
              help="No pruning before this training step.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def sweep_command(config_path: str, params: tuple[str, ...], trials: int, metric: str,
                  seed: int, out_dir: str | None, overrides: tuple[str, ...],
                  startup_trials: int, prune: bool, prune_startup_trials: int,
                  prune_warmup_steps: int, no_progress: bool) -> None:
    """Search hyperparameters of CONFIG.yaml: each trial is an ordinary `tuneloop train` run.

    Optuna's TPE sampler (seeded) picks each trial's --param values; every held-out eval loss
    is reported to a median pruner, and a trial it prunes stops there with status `pruned`.
    Writes SWEEP/trial-NNN/ (run dirs, in the index as usual), SWEEP/sweep.json (every trial),
    SWEEP/best.yaml (the best trial's full config, for `tuneloop train`) and SWEEP/report.html;
    each trial is also recorded in the index. See docs/sweep.md.
    """
    # lazy: CLI start-up (the sweep pulls optuna, torch and the trainer)
    from tuneloop.commands.train import train_with_suites
    from tuneloop.sweep import SweepOptions, run_sweep
    from tuneloop.sweep.params import format_values

    result = run_sweep(
        config_path, params, metric=metric, out=out_dir, overrides=overrides,
        progress=False if no_progress else None, train_fn=train_with_suites, echo=click.echo,
        options=SweepOptions(trials=trials, seed=seed, startup_trials=startup_trials,
                             prune=prune, prune_startup_trials=prune_startup_trials,
                             prune_warmup_steps=prune_warmup_steps))
    best = result.best
    counts = {s: sum(t.state == s for t in result.trials) for s in ("complete", "pruned", "failed")}
    click.echo(f"{counts['complete']} complete, {counts['pruned']} pruned, "
               f"{counts['failed']} failed")
    click.echo(f"best: trial {best.number} ({result.metric.name} = {best.value:.4g}): "
               f"{format_values(best.params)}")
    click.echo(f"best config: {result.best_config}")
    click.echo(f"sweep: {result.sweep_json}")
    click.echo(f"report: {result.report}")
