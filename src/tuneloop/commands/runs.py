"""`tuneloop runs` (the run index as a table) and `tuneloop report` (one self-contained HTML file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click


def _fmt(value: object, spec: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return "—"


@click.command("runs")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON instead of a table.")
@click.option(
    "--index", "index_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Index file (default: $TUNELOOP_HOME/index.sqlite).",
)
def runs_command(as_json: bool, index_path: Path | None) -> None:
    """List recorded runs: model, method, data fingerprint, steps, best eval loss, suite score."""
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop import index
    from tuneloop.report.build import short_fingerprint

    path = index_path or index.default_index_path()
    rows = index.list_runs(index=path) if path.is_file() else []
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo(f"No runs recorded yet in {path}. `tuneloop train` records each run it starts.")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Runs in {path}", title_justify="left")
    nowrap = {"no_wrap": True}
    right = {"justify": "right", "no_wrap": True}
    for col, kw in (
        ("name", nowrap), ("model", nowrap), ("method", nowrap), ("data", nowrap),
        ("steps", right), ("best eval loss", right), ("suite score", right), ("status", nowrap),
        ("path", {"overflow": "fold"}),
    ):
        table.add_column(col, **kw)
    for r in rows:
        score = r.get("latest_suite_score")
        suite = f"{100 * score:.1f}%" if isinstance(score, (int, float)) else "—"
        table.add_row(
            r["name"] or "—", r["model"] or "—", r["method"] or "—", short_fingerprint(r["data_fingerprint"]),
            _fmt(r["steps"], "d"), _fmt(r["best_eval_loss"], ".4f"), suite,
            r["status"] or "—", r["run_dir"],
        )
    # markup/highlight off: names and paths are user text, shown literally.
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=240)  # piped: don't squeeze to 80 columns
    console.print(table, markup=False)


@click.command("report")
@click.argument("run_dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--compare", "compare_dirs", multiple=True, type=click.Path(path_type=Path),
    help="A `tuneloop compare` output dir (compare.json); repeatable.",
)
@click.option(
    "--evals", "eval_dirs", multiple=True, type=click.Path(path_type=Path),
    help="A suite output dir (<variant>/cases.jsonl + summary.json); repeatable.",
)
@click.option(
    "--out", "out", type=click.Path(path_type=Path), default=Path("report.html"),
    show_default=True, help="HTML file to write.",
)
@click.option(
    "--index", "index_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Index file to join evaluations from (default: $TUNELOOP_HOME/index.sqlite).",
)
@click.option(
    "--arena", "arena_db", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="An arena database (`tuneloop arena serve --db`): adds ratings with intervals.",
)
def report_command(
    run_dirs: tuple[Path, ...],
    compare_dirs: tuple[Path, ...],
    eval_dirs: tuple[Path, ...],
    out: Path,
    index_path: Path | None,
    arena_db: Path | None,
) -> None:
    """Write one self-contained HTML report comparing RUN directories.

    Loss curves, suite pass rates per variant and checkpoint, per-case outputs with flipped cases
    highlighted, config diff, data fingerprints and contamination; with --arena, human ratings.
    Opens offline; runs no scripts.
    """
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.report import write_report

    arena = None
    if arena_db is not None:
        from tuneloop.arena.results import arena_results

        arena = arena_results(arena_db)
    summary = write_report(
        run_dirs, out=out, compare_dirs=compare_dirs, eval_dirs=eval_dirs, index_path=index_path,
        arena=arena,
    )
    click.echo(
        f"wrote {summary.out}: {summary.runs} run(s), {summary.columns} variant column(s), "
        f"{summary.cases} case(s), {summary.flipped} flipped"
    )
    for warning in summary.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


def register(cli: click.Group) -> None:
    """Add `runs` and `report` to the CLI."""
    cli.add_command(runs_command)
    cli.add_command(report_command)
