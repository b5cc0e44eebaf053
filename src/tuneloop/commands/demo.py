"""`tuneloop demo`: the whole loop on shipped data, on CPU, in about ten minutes."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add the `demo` command to the CLI."""
    cli.add_command(demo_command)


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False), default="demo-run", show_default=True,
              help="Directory for the demo's data copy, split, run, evals and report.")
@click.option("--overwrite", is_flag=True,
              help="Replace a previous demo in --workdir (refused for any other directory).")
@click.option("--quick", is_flag=True,
              help="A smoke run: 4 suite cases, 2 training steps (numbers mean nothing).")
@click.option("--model", "model_ref", default=None, metavar="REF",
              help="Model reference to fine-tune (default: the embedded smollm2-135m-instruct).")
@click.option("--no-progress", is_flag=True, help="No progress bars (stage lines only).")
def demo_command(workdir: str, overwrite: bool, quick: bool, model_ref: str | None,
                 no_progress: bool) -> None:
    """Run the loop on a fictional organisation's data and print a before/after table.

    data check → split → baselines (base, base + a good system prompt) → LoRA fine-tuning →
    evaluation on a held-out suite of paraphrased questions → report.html. The data describes
    the invented Marrowick Tide Co-op, so no pretrained model knows its facts; the table shows
    pass rate, fact accuracy, style accuracy and held-out loss per variant.
    """
    # lazy: the demo pulls train, eval and report (pydantic, yaml), ~0.5 s of CLI start-up
    from tuneloop.demo import run_demo

    run_demo(workdir, quick=quick, progress=not no_progress, model=model_ref,
             overwrite=overwrite)
