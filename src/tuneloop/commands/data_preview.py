"""`tuneloop data preview`: show rendered examples with the trained tokens marked."""

from __future__ import annotations

import click

from tuneloop.commands.data import data
from tuneloop.errors import DataError

# Trained tokens stand out; masked ones (prompt, template glue) are dimmed.
TRAINED_STYLE = "bold black on green"
MASKED_STYLE = "dim"


@click.command("preview")
@click.argument("file")
@click.option("--model", "ref", required=True, help="Model reference whose tokenizer/template to use.")
@click.option("-n", "count", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many records to show.")
@click.option("--max-length", type=click.IntRange(min=2), default=None,
              help="Apply training truncation at this many tokens.")
@click.option("--template", default=None,
              help="auto, chat, alpaca or a .jinja file (default: the model's own).")
@click.option("--train-on-prompt", is_flag=True, help="Train on prompt tokens too.")
@click.option("--format", "fmt", default=None, help="Force the data format (see `data check`).")
@click.option("--plain", is_flag=True, help="No colour: wrap trained spans in ⟦…⟧.")
def preview(file: str, ref: str, count: int, max_length: int | None, template: str | None,
            train_on_prompt: bool, fmt: str | None, plain: bool) -> None:
    """Render the first -n records of FILE as the model will be trained on them.

    Trained tokens (assistant answers and their end-of-turn token, by default) are highlighted,
    or wrapped in ⟦…⟧ with --plain; each record shows its total and trained token counts.
    """
    from rich.console import Console
    from rich.text import Text

    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.data.load import load_records
    from tuneloop.data.render import Renderer
    from tuneloop.models import load_tokenizer, model_template, resolve_model_ref

    loaded = load_records([file], format=fmt)
    if not loaded.records:
        raise DataError(f"no readable records ({len(loaded.rejects)} rows could not be parsed)",
                        where=file, fix=f"run `tuneloop data check {file}` to see why")
    resolved = resolve_model_ref(ref)
    tokenizer = load_tokenizer(resolved)
    renderer = Renderer(tokenizer, template=template or model_template(resolved),
                        max_length=max_length, train_on_prompt=train_on_prompt)
    console = Console(no_color=plain, highlight=False, soft_wrap=True)
    total = trained = 0
    shown = loaded.records[:count]
    for record in shown:
        results = renderer.render_chunks(record)
        for k, res in enumerate(results):
            part = f" (chunk {k + 1}/{len(results)})" if len(results) > 1 else ""
            if res.example is None:
                console.print(f"── {record.where}{part} ── dropped: {res.reason}", style="yellow")
                continue
            ex = res.example
            total += len(ex.input_ids)
            trained += ex.n_trained
            note = f", prompt cut by {ex.prompt_truncated}" if ex.prompt_truncated else ""
            console.print(f"── {record.where}{part} ── {len(ex.input_ids)} tokens, "
                          f"{ex.n_trained} trained{note}", style="bold")
            text = Text()
            for piece, is_trained in renderer.segments(ex):
                if plain:
                    text.append(f"⟦{piece}⟧" if is_trained else piece)
                else:
                    text.append(piece, style=TRAINED_STYLE if is_trained else MASKED_STYLE)
            console.print(text)
    console.print(f"{len(shown)} of {len(loaded.records)} records shown "
                  f"(template {renderer.template_name}): {total} tokens, {trained} trained "
                  f"({100 * trained / max(total, 1):.1f}%)", style="bold")
    if loaded.rejects:
        console.print(f"{len(loaded.rejects)} rows could not be parsed; "
                      f"see `tuneloop data check {file}`", style="yellow")


def register(cli: click.Group) -> None:
    """Add `preview` to the `data` group of tuneloop.commands.data."""
    data.add_command(preview)
