"""`tuneloop train`: fine-tune a model from a YAML config into a run directory."""

from __future__ import annotations

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
    from tuneloop.config import load_config
    from tuneloop.train import train

    config = load_config(config_path, list(overrides))
    result = train(config, resume=resume or force_resume, force_resume=force_resume,
                   output_dir=output_dir, progress=False if no_progress else None)
    if _is_main():
        best = f"{result.best_eval_loss:.4f}" if result.best_eval_loss is not None else "n/a"
        final = f"{result.final_train_loss:.4f}" if result.final_train_loss is not None else "n/a"
        click.echo(f"steps: {result.steps}  final train loss: {final}  best eval loss: {best}")
        click.echo(f"run: {result.run_dir}")
        click.echo(f"model: {result.model_dir}")


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"
