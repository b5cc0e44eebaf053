"""`tuneloop iterate`: one failure-driven round — failed cases → targeted rows → retrain → re-eval."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add the `iterate` command to the CLI."""
    cli.add_command(iterate_command)


@click.command("iterate")
@click.argument("result", type=click.Path(exists=True))
@click.option("--suite", "suite_path", required=True, type=click.Path(dir_okay=False, exists=True),
              help="The suite YAML the result was run on (re-evaluated after training).")
@click.option("--config", "config_path", required=True,
              type=click.Path(dir_okay=False, exists=True),
              help="Training config of the previous round (its data.train is round 1's data).")
@click.option("--docs", "documents", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Documents holding the facts (Markdown, text, PDF); repeatable.")
@click.option("--seeds", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Seed rows to ground new rows in, as well as or instead of --docs; repeatable.")
@click.option("--generator", required=True,
              help="Model that writes the rows: a model ref or openai:URL#model.")
@click.option("--judge", default=None, help="Model that checks them (default: the generator).")
@click.option("--out", "loop_dir", required=True, type=click.Path(file_okay=False),
              help="Loop directory: round-NNN/ subdirectories and report.html (the loop's id).")
@click.option("--variant", default=None,
              help="With a compare.json: the variant to improve (default: the last one).")
@click.option("--run", "run_dir", default=None, type=click.Path(file_okay=False),
              help="The previous round's run directory (recorded with round 1).")
@click.option("--questions", default=3, show_default=True, type=click.IntRange(1),
              help="Questions asked per targeted chunk.")
@click.option("--chunk-words", default=120, show_default=True, type=click.IntRange(20),
              help="Document chunk size in words (small chunks target single facts).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value for the retraining (repeatable).")
@click.option("--continue", "continue_run", is_flag=True,
              help="Continue from the previous round's run (--run, or the one recorded) on the "
              "new rows only, instead of retraining on all data; pass e.g. --set method=full "
              "for a LoRA run.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def iterate_command(result: str, suite_path: str, config_path: str, documents: tuple[str, ...],
                    seeds: tuple[str, ...], generator: str, judge: str | None, loop_dir: str,
                    variant: str | None, run_dir: str | None, questions: int, chunk_words: int,
                    overrides: tuple[str, ...], continue_run: bool, no_progress: bool) -> None:
    """Target the failing cases of RESULT (a suite result or compare.json) and run one round.

    Groups the failures (by failed checks/tags and question similarity), generates
    document-grounded rows about their facts (never the suite's own questions: rows sharing a
    13-gram with the suite are dropped), writes a new data version, retrains from --config,
    re-evaluates --suite, records the round (with its parent) in the index, and writes
    LOOP/report.html with the rounds side by side. Pass the new round's evals to go again.
    """
    # lazy: iterate pulls synth, train, eval and report (torch, pydantic, jinja2)
    from tuneloop.iterate import run_round
    from tuneloop.synth.docs import DocsOptions

    res = run_round(result, suite=suite_path, config=config_path, generator=generator,
                    judge=judge, loop=loop_dir, documents=documents, seeds=seeds, variant=variant,
                    run_dir=run_dir, overrides=overrides, progress=not no_progress,
                    continue_overrides=[] if continue_run else None,
                    options=DocsOptions(chunk_words=chunk_words, overlap=min(20, chunk_words // 4),
                                        questions=questions))
    click.echo(f"round {res.round}: pass rate {res.pass_rate_before:.1%} → "
               f"{res.pass_rate_after:.1%} ({len(res.flipped_to_pass)} fixed, "
               f"{len(res.flipped_to_fail)} broken); {res.new_rows} new rows")
    click.echo(f"next round: tuneloop iterate {res.evals} --suite {suite_path} "
               f"--config {config_path} --out {loop_dir} ...")
    click.echo(f"report: {res.report}")
