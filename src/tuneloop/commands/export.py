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

    _refuse_missing_run(run)
    result = export_model(run, format=fmt, out=out, quant=quant, device=device,
                          progress=not no_progress)
    for check in result.checks:
        click.echo(f"ok  {check.name}: {check.detail}")
    click.echo(f"wrote {result.out}: {', '.join(p.name for p in result.files)}")
    if fmt == "ollama":
        click.echo(f"run it: cd {result.out} && ollama create NAME -f Modelfile && ollama run NAME")


def _refuse_missing_run(ref: str) -> None:
    """A bare name that is no directory here is a mistyped run, not a hub download to attempt.

    Hub ids are still exported as `owner/name`; only a name without a slash that does not exist
    (and is not the embedded alias) stops here, naming where it was looked for.
    """
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.errors import ModelError
    from tuneloop.models import EMBEDDED_ALIAS
    from tuneloop.workspace import runs_root

    path = Path(ref).expanduser()
    if path.exists() or "/" in ref or ref == EMBEDDED_ALIAS:
        return
    root = runs_root()
    near = sorted(p.name for p in root.glob(f"{ref}*") if p.is_dir()) if root.is_dir() else []
    hint = (f"runs under {root} starting with that name: {', '.join(near[:5])}" if near else
            f"list your runs with `tuneloop runs` (they live under {root})")
    raise ModelError(f"no run directory {ref!r} (looked for {path.resolve()})",
                     where=ref, fix=f"pass the run directory's path; {hint}; a hub model is "
                     "exported by its full id, owner/name")


def register(cli: click.Group) -> None:
    """Add `export` to the CLI."""
    cli.add_command(export_command)
