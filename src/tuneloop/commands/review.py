"""`tuneloop review serve|export`: people check a loop round's rows before it is trained on."""

from __future__ import annotations

from pathlib import Path

import click

from tuneloop.commands.listen import listen_options

_db_option = click.option(
    "--db", type=click.Path(dir_okay=False, path_type=Path), default=Path("review.sqlite"),
    show_default=True, help="The review's sqlite file (items, sessions, saved reviews).")


@click.group("review")
def review_group() -> None:
    """Review a loop round: write rows for failed cases, accept/reject/edit generated rows."""


@review_group.command("serve")
@click.option("--result", required=True, type=click.Path(path_type=Path),
              help="The round's suite result: cases.jsonl or its directory (failed cases).")
@click.option("--rows", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Generated rows to judge (LOOP/round-NNN/synth/train.jsonl).")
@click.option("--targets", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="LOOP/round-NNN/targets.json: the chunk targeted for each failed case.")
@_db_option
@listen_options(port=8200, api_key_help="Access key reviewers type when they sign in")
def serve_cmd(result: Path, rows: Path | None, targets: Path | None, db: Path, host: str,
              port: int, api_key: str | None, insecure: bool) -> None:
    """Serve the review page: for each failed case a reviewer writes a training row in their own
    words; each generated row is accepted, rejected or edited.

    Saves live in --db (one per item and reviewer; saving again replaces the earlier save, which
    the database keeps). A row sharing a 13-gram with a suite case is refused on save, since
    `tuneloop iterate` would drop it. Binds 127.0.0.1 by default.
    """
    from tuneloop.review.server import serve_review  # lazy: CLI start-up

    serve_review(result, rows=rows, targets=targets, db=db, host=host, port=port,
                 api_key=api_key, insecure=insecure)


@review_group.command("export")
@_db_option
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="JSONL file of reviewed training rows to write.")
def export_cmd(db: Path, out: Path) -> None:
    """Write the saved reviews as training rows (meta.source human|machine, meta.reviewed).

    Written and edited rows are provenance human, accepted generated rows machine; rejected rows
    are counted, not written. Pass the file (or the db) to `tuneloop iterate --reviewed`.
    """
    from tuneloop.review.export import export_reviewed  # lazy: CLI start-up

    click.echo(export_reviewed(db, out).line())


def register(cli: click.Group) -> None:
    """Add the `review` group to the CLI."""
    cli.add_command(review_group)
