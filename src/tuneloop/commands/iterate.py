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
              help="What writes the rows: `extractive` (no model: questions about the documents' "
              "statements, by rule), a model ref, or openai:URL#model.")
@click.option("--judge", default=None, help="Model that checks them (default: the generator).")
@click.option("--out", "loop_dir", required=True, type=click.Path(file_okay=False),
              help="Loop directory: round-NNN/ subdirectories and report.html (the loop's id).")
@click.option("--variant", default=None,
              help="With a compare.json: the variant to improve (default: the last one).")
@click.option("--run", "run_dir", default=None, type=click.Path(file_okay=False),
              help="The run that produced RESULT (recorded with round 1; `continue` trains it "
              "further).")
@click.option("--questions", default=6, show_default=True, type=click.IntRange(1),
              help="Rows asked per failing case (its fact in different wordings).")
@click.option("--chunk-words", default=120, show_default=True, type=click.IntRange(20),
              help="Document chunk size in words (small chunks target single facts).")
@click.option("--recipe", type=click.Choice(["continue", "retrain"]), default="continue",
              show_default=True,
              help="continue: the current round's run (the same LoRA adapter, or the same full "
              "weights) trained on the new rows plus replayed earlier rows; retrain: the "
              "config's model trained on every row.")
@click.option("--replay", default=None, type=click.FloatRange(0),
              help="With continue: earlier rows replayed per new row (default: every earlier "
              "row, the measured best, docs/iterate.md).")
@click.option("--protect", default=None, type=click.IntRange(0),
              help="Rows per passing case's fact, in new wordings, so the round rehearses what "
              "already passes (default: the measured one, docs/iterate.md; 0 = none).")
@click.option("--reviewed", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Rows people wrote or accepted (`tuneloop review export` file, or its "
              "review.sqlite), added to the round's new rows; repeatable.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value for the round's training (repeatable).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def iterate_command(result: str, suite_path: str, config_path: str, documents: tuple[str, ...],
                    seeds: tuple[str, ...], generator: str, judge: str | None, loop_dir: str,
                    variant: str | None, run_dir: str | None, questions: int, chunk_words: int,
                    recipe: str, replay: float | None, protect: int | None,
                    reviewed: tuple[str, ...],
                    overrides: tuple[str, ...], no_progress: bool) -> None:
    """Target the failing cases of RESULT (a suite result or compare.json) and run one round.

    Starts from the loop's current round (its best so far), groups its failures, writes several
    document-grounded rows per failed fact in the earlier rows' house style (never the suite's
    own questions: rows sharing a 13-gram with the suite are dropped), trains (`--recipe`),
    re-evaluates --suite and gives the round its verdict against its parent: fixed / broken
    cases, pass rates with 95 % intervals and the exact McNemar p-value. A round that breaks
    more than it fixes is reported as a regression and does not become the loop's current model.
    A round with no new row stops before training. Pass the new round's evals to go again.
    """
    # lazy: iterate pulls synth, train, eval and report (torch, pydantic, jinja2)
    from tuneloop.iterate import PROTECT, REPLAY, run_round, verdict_lines
    from tuneloop.review import load_reviewed
    from tuneloop.synth.docs import DocsOptions

    rows = [row for path in reviewed for row in load_reviewed(path)]
    res = run_round(result, suite=suite_path, config=config_path, generator=generator,
                    judge=judge, loop=loop_dir, documents=documents, seeds=seeds, variant=variant,
                    run_dir=run_dir, overrides=overrides, progress=not no_progress,
                    recipe=recipe, replay=REPLAY if replay is None else replay, reviewed=rows,
                    protect=PROTECT if protect is None else protect,
                    options=DocsOptions(chunk_words=chunk_words, overlap=min(20, chunk_words // 4),
                                        questions=questions))
    for line in verdict_lines(res):
        click.echo(line)
    click.echo(f"{res.new_rows} new rows, {res.replayed_rows} replayed ({res.recipe})")
    start = res.evals if res.current_round == res.round else "the current round's evals"
    click.echo(f"next round: tuneloop iterate {start} --suite {suite_path} "
               f"--config {config_path} --out {loop_dir} ...")
    click.echo(f"report: {res.report}")
