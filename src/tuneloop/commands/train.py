"""`tuneloop train`: fine-tune a model from a YAML config into a run directory."""

from __future__ import annotations

from typing import Any

import click


def register(cli: click.Group) -> None:
    """Add the `train` command to the CLI."""
    cli.add_command(train_command)


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
    result = train_with_suites(config, resume=resume or force_resume, force_resume=force_resume,
                               output_dir=output_dir, progress=False if no_progress else None)
    if _is_main():
        best = f"{result.best_eval_loss:.4f}" if result.best_eval_loss is not None else "n/a"
        final = f"{result.final_train_loss:.4f}" if result.final_train_loss is not None else "n/a"
        click.echo(f"steps: {result.steps}  final train loss: {final}  best eval loss: {best}")
        click.echo(f"run: {result.run_dir}")
        click.echo(f"model: {result.model_dir}")


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
