"""Export a trained model where users run it: merged HF weights, GGUF (llama.cpp), Ollama.

`export_model(ref, format=..., out=...)` loads the model once at fp32 (merging a LoRA adapter),
writes the format into a temporary sibling of OUT, runs that format's checks on what it wrote,
and only then renames it to OUT. A failed check leaves nothing behind and says what it measured.
See docs/export.md.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tuneloop.errors import UsageError
from tuneloop.export.source import Check, ExportError, require

FORMATS = ("hf", "gguf", "ollama")
EXPORT_FILE = "export.json"

__all__ = ["EXPORT_FILE", "FORMATS", "Check", "ExportError", "ExportResult", "export_model"]


@dataclass
class ExportResult:
    """Where the export went, which files it holds and the checks it passed."""

    out: Path
    format: str
    files: list[Path]
    checks: list[Check] = field(default_factory=list)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"output {out} already exists", where=str(out),
                         fix="pass a new --out directory (export never overwrites files)")
    if not out.parent.is_dir():
        raise UsageError(f"the parent directory of --out does not exist: {out.parent}",
                         fix=f"create it first (mkdir -p {out.parent})")


def export_model(ref: str, *, format: str, out: str | Path, quant: str = "f16",
                 device: str = "cpu", progress: bool = True) -> ExportResult:
    """Export model reference REF (usually a run dir) as FORMAT into the new directory OUT."""
    from tuneloop.export.gguf_file import QUANTS
    from tuneloop.progress import eta_progress

    if format not in FORMATS:
        raise UsageError(f"unknown export format {format!r}", fix=f"use one of {', '.join(FORMATS)}")
    if quant not in QUANTS:
        raise UsageError(f"unknown GGUF quantization {quant!r}", fix=f"use one of {', '.join(QUANTS)}")
    out = Path(out).expanduser()
    _check_out(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    stages = {"hf": 3, "gguf": 4, "ollama": 5}[format]
    with eta_progress(enabled=progress) as bar:
        task = bar.add_task(f"export {format}", total=stages)

        def stage(what: str) -> None:
            bar.update(task, advance=1, description=f"export {format}: {what}")

        try:
            tmp.mkdir()
            result = _export_into(ref, format, tmp, quant, device, stage)
            _write_record(ref, format, quant, tmp, result.checks)
            if out.exists():
                out.rmdir()  # the empty directory _check_out accepted
            os.rename(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    result.out = out
    result.files = sorted(out.iterdir())
    return result


def _export_into(ref: str, format: str, tmp: Path, quant: str, device: str, stage) -> ExportResult:
    from tuneloop.export.source import load_source

    stage("loading model (fp32) and merging")
    source = load_source(ref, device=device)
    checks = list(source.checks)
    if format == "hf":
        from tuneloop.export.hf import check_hf, write_hf

        stage("saving")
        write_hf(source, tmp)
        stage("reloading to check")
        checks.append(check_hf(source, tmp))
        return ExportResult(tmp, format, [], checks)

    from tuneloop.export.gguf_check import check_gguf
    from tuneloop.export.gguf_file import gguf_name, write_gguf

    spec = None
    if format == "ollama":  # refuse an unknown template before the slow part
        from tuneloop.export.ollama import detect_template

        stop_tokens = [source.tokenizer.convert_ids_to_tokens(i)
                       for i in source.renderer.stop_token_ids]
        spec = detect_template(source.tokenizer, source.renderer.template_source, stop_tokens)
    stage(f"writing GGUF ({quant})")
    path = write_gguf(source, tmp / gguf_name(quant), quant)
    stage("reloading GGUF to compare greedy answers")
    gguf_checks = check_gguf(source, path, quant)
    checks.extend(gguf_checks)
    for check in gguf_checks:
        require(check)
    if spec is not None:
        from tuneloop.export.ollama import modelfile_text

        stage("writing Modelfile")
        (tmp / "Modelfile").write_text(modelfile_text(path.name, spec), encoding="utf-8")
    stage("done")
    return ExportResult(tmp, format, [], checks)


def _write_record(ref: str, format: str, quant: str, out: Path, checks: list[Check]) -> None:
    """export.json: what was exported from where, and every check with its figures."""
    record = {"source": str(Path(ref).resolve()) if Path(ref).exists() else ref,
              "format": format, "quant": None if format == "hf" else quant,
              "checks": [asdict(c) for c in checks]}
    (out / EXPORT_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")

