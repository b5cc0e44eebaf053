"""`tuneloop export`: a trained run as merged HF weights, a GGUF file, or an Ollama model."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("run")
@click.option("--format", "fmt", required=True, type=click.Choice(["hf", "gguf", "ollama"]),
              help="hf: merged weights for transformers/vLLM; gguf: llama.cpp; ollama: GGUF + "
              "Modelfile.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="New directory to write (must not exist, or be empty).")
@click.option("--quant", type=click.Choice(["f16", "q8_0"]), default="f16", show_default=True,
              help="GGUF weight type (gguf and ollama formats).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ...")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def export_command(run: str, fmt: str, out: Path, quant: str, device: str,
                   no_progress: bool) -> None:
    """Export RUN (a run directory or any model reference) where users run models.

    The LoRA adapter is merged into the fp32 base, and the command checks its own result before
    keeping it: merged logits equal the adapter model's (hf), and the GGUF, read back by
    transformers, gives the same greedy answers (f16) or ≥ 90% top-1 agreement (q8_0). The
    checks and their figures are written to OUT/export.json. See docs/export.md.
    """
    from tuneloop.export import export_model

    result = export_model(run, format=fmt, out=out, quant=quant, device=device,
                          progress=not no_progress)
    for check in result.checks:
        click.echo(f"ok  {check.name}: {check.detail}")
    click.echo(f"wrote {result.out}: {', '.join(p.name for p in result.files)}")
    if fmt == "ollama":
        click.echo(f"run it: cd {result.out} && ollama create NAME -f Modelfile && ollama run NAME")


def register(cli: click.Group) -> None:
    """Add `export` to the CLI."""
    cli.add_command(export_command)
