"""`tuneloop train`: fine-tune a model from a YAML config into a run directory."""

from __future__ import annotations

from typing import Any

import click


def register(cli: click.Group) -> None:
    """Add the `train` and `plan` commands to the CLI."""
    cli.add_command(train_command)
    cli.add_command(plan_command)


@click.command("train")
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set training.max_steps=20 (repeatable).")
@click.option("--resume", is_flag=True,
              help="Continue the run in --output-dir from its latest complete checkpoint.")
@click.option("--force-resume", is_flag=True,
              help="Resume (implies --resume) even if the data or config fingerprint changed.")
@click.option("--output-dir", type=click.Path(file_okay=False),
              help="Run directory (default: a new one under $TUNELOOP_HOME/runs).")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs only).")
def train_command(config_path: str, overrides: tuple[str, ...], resume: bool, force_resume: bool,
                  output_dir: str | None, no_progress: bool) -> None:
    """Fine-tune (LoRA or full, or continued pretraining) as described by CONFIG.yaml.

    Writes a run directory (config.yaml, data/fingerprint.json, metrics.jsonl, tensorboard/,
    checkpoints/, model/, run.json). The run directory is a model reference for every command.
    Works under `accelerate launch` / `torchrun` for several processes. See docs/training.md.
    """
    from tuneloop.train.config import load_config

    config = load_config(config_path, list(overrides))
    from tuneloop.data.load import check_sources

    # a file type no reader takes fails now, not after the plan and the model load (~30 s)
    check_sources([*config.data.train, *config.data.eval], config.data.format)
    if _is_main():
        # lazy: the plan reads the model's config through transformers
        from tuneloop.errors import ModelError
        from tuneloop.train.plan import format_plan, make_plan

        try:  # the estimate; `tuneloop plan` also probes the step time
            click.echo(format_plan(make_plan(config)))
        except ModelError as exc:  # an estimate it cannot make must not stop the training
            click.echo(f"plan: no estimate ({exc.what})")
    result = train_with_suites(config, resume=resume or force_resume, force_resume=force_resume,
                               output_dir=output_dir, progress=False if no_progress else None)
    if _is_main():
        final = f"{result.final_train_loss:.4f}" if result.final_train_loss is not None else "n/a"
        click.echo(f"steps: {result.steps}  final train loss: {final}  "
                   f"best eval loss: {_best_eval(result)}")
        warning = _eval_warning(result)
        if warning:
            click.echo(warning, err=True)
        click.echo(f"run: {result.run_dir}")
        click.echo(f"model: {result.model_dir}")


def _best_step_and_loss(result: Any) -> tuple[int, float] | None:
    """(step, loss) of the best held-out eval, the step-0 baseline (untrained model) included."""
    scores = []
    if result.baseline_eval_loss is not None:
        scores.append((result.baseline_eval_loss, 0))
    if result.best_eval_loss is not None:
        scores.append((result.best_eval_loss, result.best_eval_step or result.steps))
    if not scores:
        return None
    loss, step = min(scores)  # a tie goes to step 0: training did not beat the base model
    return step, loss


def _best_eval(result: Any) -> str:
    best = _best_step_and_loss(result)
    if best is None:
        return "n/a"
    step, loss = best
    return f"{loss:.4f} (step 0, before training)" if step == 0 else f"{loss:.4f} (step {step})"


def _eval_warning(result: Any) -> str | None:
    """Plain words when the run's model is not its best, or when nothing was learned."""
    if result.nothing_learned:
        return (f"warning: nothing was learned: the held-out eval loss is "
                f"{result.final_eval_loss:.6g} before and after training (to 1e-7); raise "
                "training.learning_rate or train longer")
    best, final = _best_step_and_loss(result), result.final_eval_loss
    if best is None or final is None or final <= best[1] + 1e-7:
        return None
    step, loss = best
    where = ("the untrained model (step 0)" if step == 0 else
             f"checkpoint {result.best_checkpoint}" if result.best_checkpoint else
             f"step {step} (no checkpoint holds it)")
    return (f"warning: the final eval loss {final:.4f} is worse than the best, {loss:.4f} at "
            f"{where}; model/ holds the final weights")


@click.command("plan")
@click.argument("config_path", metavar="CONFIG.yaml", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key (repeatable), as for `train`.")
@click.option("--probe-steps", default=4, show_default=True, type=click.IntRange(0),
              help="Real training steps to time (0: memory estimate only).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan_command(config_path: str, overrides: tuple[str, ...], probe_steps: int,
                 as_json: bool) -> None:
    """Estimate peak memory and time per epoch for CONFIG.yaml, and recommend settings.

    Memory per process by term (weights, gradients, AdamW state, activations at the configured
    batch and length, vocabulary logits), with gradient checkpointing off and on; time per epoch
    from a few measured steps; advice on LoRA vs full, batch size and checkpointing.
    """
    import json

    # lazy: CLI start-up (the plan pulls transformers and, for the probe, the trainer)
    from tuneloop.train.config import load_config
    from tuneloop.train.plan import format_plan, make_plan

    plan = make_plan(load_config(config_path, list(overrides)), probe_steps=probe_steps)
    click.echo(json.dumps(plan.to_json(), indent=2) if as_json else format_plan(plan))


def train_with_suites(config: Any, **kwargs: Any) -> Any:
    """tuneloop.train.train with `eval.suites` run at every save (suite-gated checkpoints).

    The suites are loaded before training starts, so a broken suite file fails in seconds, not
    at the first save. Keyword arguments go to tuneloop.train.train (resume, output_dir, ...).
    """
    from dataclasses import replace

    from tuneloop.train import train
    from tuneloop.train.loop import TrainHooks

    hooks = kwargs.pop("hooks", None) or TrainHooks()
    if config.eval.suites:
        hooks = replace(hooks, evaluate_checkpoint=suite_scorer(config.eval.suites))
    return train(config, hooks=hooks, **kwargs)


def suite_scorer(paths: list[str]) -> Any:
    """(model, tokenizer, renderer) -> {suite path: pass rate}, the suites loaded once now."""
    from tuneloop.eval.suite import load_suite
    from tuneloop.eval.suite_run import run_suite_on_model

    suites = [(path, load_suite(path)) for path in paths]

    def score(model: Any, tokenizer: Any, renderer: Any) -> dict[str, float]:
        return {path: float(run_suite_on_model(model, tokenizer, renderer, suite).pass_rate)
                for path, suite in suites}

    return score


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"
