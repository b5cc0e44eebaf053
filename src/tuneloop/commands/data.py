"""`tuneloop data …`: check and split instruction data (thin wrappers over tuneloop.data)."""

from __future__ import annotations

import json
import sys

import click

from tuneloop.data.load import FORMATS
from tuneloop.errors import DataError, UsageError


@click.group("data")
def data() -> None:
    """Check, curate and split instruction data."""


_format_opt = click.option("--format", "fmt", type=click.Choice(FORMATS),
                           help="Force the format instead of auto-detecting it per file.")
_field_map_opt = click.option("--field-map", metavar="SRC=DST,...",
                              help="Rename fields first, e.g. question=instruction,answer=output.")
_threshold_opt = click.option("--near-dup-threshold", type=click.FloatRange(0, 1, min_open=True),
                              default=0.8, show_default=True,
                              help="Jaccard similarity (word 3-grams) at which rows are near-duplicates.")


@data.command("check")
@click.argument("files", nargs=-1, required=True)
@_format_opt
@_field_map_opt
@click.option("--model", help="Model reference; adds token-length stats under its template.")
@click.option("--max-length", type=click.IntRange(min=2),
              help="Reject rows whose answer would be cut at this many tokens (needs --model).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write clean rows (JSONL) here.")
@click.option("--rejects", type=click.Path(dir_okay=False),
              help="Write rejected rows (original text, file, line, reasons) here.")
@click.option("--redact-pii", is_flag=True,
              help="Replace PII with [EMAIL]/[PHONE]/[CREDIT_CARD]/[SSN] instead of rejecting.")
@_threshold_opt
@click.option("--no-near-dup", is_flag=True, help="Skip the near-duplicate (MinHash) pass.")
@click.option("--against", multiple=True, metavar="EVAL",
              help="Eval data (suite YAML or any data file) to scan for contamination; repeatable.")
@click.option("--ngram", type=click.IntRange(min=1), default=13, show_default=True,
              help="n-gram size (words) for the contamination scan.")
@click.option("--strict", is_flag=True, help="Exit 1 if any row has any issue.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON report.")
def check(files: tuple[str, ...], fmt: str | None, field_map: str | None, model: str | None,
          max_length: int | None, out: str | None, rejects: str | None, redact_pii: bool,
          near_dup_threshold: float, no_near_dup: bool, against: tuple[str, ...], ngram: int,
          strict: bool, as_json: bool) -> None:
    """Validate and curate FILE... (JSONL, JSON, CSV, Parquet, save_to_disk dir, hub id, or raw
    .txt/.md text: one document per file, format text, for continued pretraining).

    Reports every problem row with file:line, field and reason; exact and near duplicates; PII;
    rows too long for --max-length. Exit 0 when usable rows remain, 1 when none remain (or any
    issue with --strict), 2 on usage errors.
    """
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.data.check import CheckOptions, check_files
    from tuneloop.data.load import check_sources
    from tuneloop.eval.contamination import load_eval_items
    from tuneloop.models import load_tokenizer, model_template, resolve_model_ref

    check_sources(files, fmt)  # an unusable file type fails now, not after the model loads
    if max_length is not None and model is None:
        raise UsageError("--max-length needs --model (lengths are counted in its tokens)",
                         fix="add --model smollm2-135m-instruct (or your model)")
    tokenizer, template = None, "auto"
    if model is not None:
        resolved = resolve_model_ref(model)
        # A run dir counts tokens under the template it was trained with, as training does.
        tokenizer, template = load_tokenizer(resolved), model_template(resolved)
    options = CheckOptions(near_dup=not no_near_dup, near_dup_threshold=near_dup_threshold,
                           redact_pii=redact_pii, tokenizer=tokenizer, template=template,
                           max_length=max_length,
                           against=load_eval_items(against) if against else None,
                           ngram=ngram, progress=not as_json)
    report = check_files(list(files), format=fmt, field_map=field_map, options=options)
    if out:
        report.write_clean(out)
    if rejects:
        report.write_rejects(rejects)
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print_check_summary(report, out=out, rejects=rejects)
    if not report.kept:
        raise DataError(report.nothing_usable_message(),
                        fix="see the reasons above; --rejects FILE keeps every rejected row"
                        if report.rows_read else "check that you passed the right file")
    if strict and report.issue_count:
        raise DataError(f"--strict: {report.issue_count} of {report.rows_read} rows have issues",
                        fix="fix or drop them (use --out for the clean rows), or omit --strict")


@data.command("split")
@click.argument("files", nargs=-1, required=True)
@click.option("--test-size", type=float, default=0.1, show_default=True,
              help="Fraction (<1) or number (>=1) of rows for test.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out-dir", required=True, type=click.Path(file_okay=False),
              help="Where train.jsonl, test.jsonl and manifest.json go.")
@_format_opt
@_field_map_opt
@_threshold_opt
def split(files: tuple[str, ...], test_size: float, seed: int, out_dir: str, fmt: str | None,
          field_map: str | None, near_dup_threshold: float) -> None:
    """Split FILE... into train/test deterministically, near-duplicates kept on one side.

    Writes OUT_DIR/train.jsonl, test.jsonl, manifest.json (row counts, sha256 of each file, seed,
    sources) and rejects.jsonl for rows that cannot be used.
    """
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.data.split import split_files

    manifest = split_files(list(files), out_dir, test_size=test_size, seed=seed, format=fmt,
                           field_map=field_map, threshold=near_dup_threshold,
                           progress=sys.stderr.isatty())
    rows = manifest["rows"]
    click.echo(f"train {rows['train']} rows, test {rows['test']} rows "
               f"({manifest['clusters']['multi_row']} duplicate clusters kept whole), "
               f"rejected {rows['rejected']} → {out_dir}")


def print_check_summary(report, *, out: str | None = None, rejects: str | None = None) -> None:
    """Rich tables: rows, reasons with examples, duplicates, PII, lengths, diversity, overlap."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console(soft_wrap=True)  # long paths and lists stay on one greppable line
    rows = Table(title="data check", show_header=True)
    for col in ("file", "format", "rows", "blank lines skipped"):
        rows.add_column(col, justify="left" if col in ("file", "format") else "right")
    for f in report.files:
        rows.add_row(escape(f.path), f.format or "-", str(f.rows), str(f.skipped_blank))
    con.print(rows)
    con.print(f"rows read [bold]{report.rows_read}[/]  kept [green]{len(report.kept)}[/]  "
              f"rejected [red]{len(report.rejected)}[/]")
    if report.reasons:
        reasons = Table(title="rejected by reason")
        reasons.add_column("reason")
        reasons.add_column("rows", justify="right")
        for kind, n in report.reasons.most_common():
            reasons.add_row(kind, str(n))
        con.print(reasons)
        con.print("examples (file:line field: message):")
        for kind, _ in report.reasons.most_common():
            for e in report.examples.get(kind, []):
                # soft_wrap: a long path stays on one line, so file:line can be copied/grepped
                fld = f" {e['field']}" if e["field"] else ""
                con.print(f"  [bold]{kind}[/] {escape(e['where'])}{escape(fld)}: "
                          f"{escape(e['message'])}", soft_wrap=True)
                raw = " ".join((e["raw"] or "").split())
                raw = raw if len(raw) <= 100 else raw[:97] + "..."
                con.print(f"    [dim]{escape(raw)}[/]", soft_wrap=True)
    con.print(f"duplicate clusters: exact {report.exact_dup_clusters}, near "
              f"{report.near_dup_clusters} (Jaccard ≥ {report.near_dup_threshold}, "
              f"largest {report.largest_cluster})")
    if report.pii_found:
        found = ", ".join(f"{k} {n}" for k, n in report.pii_found.most_common())
        con.print(f"PII: {found} — " + ("redacted" if report.pii_redacted else "rows rejected"))
    if report.token_lengths:
        t = report.token_lengths
        con.print(f"token length p50 {t['p50']}, p95 {t['p95']}, max {t['max']}"
                  + (f"; prompt shortened to fit: {report.prompt_truncated}"
                     if report.prompt_truncated else ""))
    stats = report.stats
    if stats and stats.share_with_input is not None:
        con.print(f"share of Alpaca rows with input: {stats.share_with_input:.1%}")
    if stats and stats.first_words:
        words = ", ".join(f"{escape(w)} {n}" for w, n in stats.first_words)
        con.print(f"most common first words: {words}")
    from tuneloop.data.provenance import provenance_line  # lazy: CLI start-up

    if (line := provenance_line(report.kept)) is not None:
        con.print(line)  # rows written by `tuneloop synth` say who wrote them
    if report.contamination is not None:
        _print_contamination(con, report.contamination)
    for label, path in (("clean rows", out), ("rejected rows", rejects)):
        if path:
            con.print(f"{label} → {escape(path)}", soft_wrap=True)


def _print_contamination(con, rep) -> None:
    from rich.markup import escape

    con.print(f"contamination ({rep.n}-gram): {rep.n_contaminated} of {rep.n_items} eval items "
              f"({rep.share_contaminated:.1%}) overlap training data"
              + (f"; {rep.short_items} items under {rep.n} words matched whole"
                 if rep.short_items else ""))
    for item in rep.items[:10]:
        con.print(f"  {escape(item.where)}: {item.n_matched}/{item.n_grams} n-grams in "
                  f"{escape(', '.join(item.train_rows))}", soft_wrap=True)
    if len(rep.items) > 10:
        con.print(f"  … {len(rep.items) - 10} more (--json lists all)")


def register(cli: click.Group) -> None:
    """Add the `data` group to the CLI."""
    cli.add_command(data)
