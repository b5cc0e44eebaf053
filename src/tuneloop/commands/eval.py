"""`tuneloop eval`: task suites, prompt-vs-fine-tune comparison, held-out loss, multiple choice.

Command modules are imported each time the CLI starts, so library modules are imported inside
the commands that use them (tuneloop.eval alone pulls pydantic and yaml, ~0.3 s).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from tuneloop.errors import EvalError, UsageError


class BelowThreshold(EvalError):
    """A suite scored below its threshold: exit 1, so `tuneloop eval suite` can gate CI."""

    exit_code = 1


@click.group("eval")
def eval_group() -> None:
    """Evaluate models: task suites, prompt vs fine-tune, held-out loss, multiple choice, judge."""


def _system_prompt(value: str | None) -> str | None:
    """--system-prompt TEXT, or @FILE to read it from a file."""
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:])
    if not path.is_file():
        raise UsageError(f"system prompt file not found: {path}",
                         fix="pass --system-prompt TEXT or @PATH of an existing file")
    return path.read_text(encoding="utf-8").strip()


def _few_shot(path: str | None, k: int) -> list | None:
    if path is None:
        return None
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.eval.suite_run import load_few_shot

    return load_few_shot(path, k)


def _variant_names(models: tuple[str, ...], prompted: bool) -> list[str]:
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.eval.suite_run import slug

    names: list[str] = []
    for ref in models:
        path = Path(ref)
        # a run's model/ dir is named after its run, not "model"
        base = slug(path.parent.name if path.name == "model" else path.name)
        name = base + ("+prompt" if prompted else "")
        n = 1
        while name in names:
            n += 1
            name = f"{base}-{n}" + ("+prompt" if prompted else "")
        names.append(name)
    return names


_system_option = click.option(
    "--system-prompt", default=None,
    help="System prompt for cases without their own (TEXT, or @FILE to read it from a file).")
_few_shot_option = click.option(
    "--few-shot", "few_shot_path", type=click.Path(dir_okay=False), default=None,
    help="Data file whose first k chat examples are shown before each case.")
_k_option = click.option("-k", "k", type=click.IntRange(1), default=3, show_default=True,
                         help="Number of few-shot examples.")
_batch_option = click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True,
                             help="Examples scored together.")
# 16 measured faster than 8 for suite generation on the 2-core CPU (docs/benchmarks.md)
_gen_batch_option = click.option("--batch-size", type=click.IntRange(1), default=16,
                                 show_default=True, help="Prompts generated together.")
_device_option = click.option("--device", default="cpu", show_default=True,
                              help="Torch device (cpu, cuda, cuda:1, mps).")


@eval_group.command("suite")
@click.argument("suite_path", metavar="SUITE.yaml", type=click.Path(dir_okay=False))
@click.option("--model", "models", multiple=True, required=True,
              help="Model reference (alias, hub id, HF dir, run dir); repeat to compare several.")
@_system_option
@_few_shot_option
@_k_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output dir (default: RUN/evals/... for a run, else <home>/evals/...).")
@click.option("--judge", default=None, help="Judge for `judge` checks: model ref or "
              "openai:URL#model (overrides the suite's `judge:`).")
@_gen_batch_option
@_device_option
def suite_cmd(suite_path: str, models: tuple[str, ...],
              system_prompt: str | None, few_shot_path: str | None, k: int,
              out_dir: str | None, judge: str | None, batch_size: int, device: str) -> None:
    """Run a task test suite on one or more models; exit 1 if any scores below the threshold.

    Generates greedily in batches, runs every case's checks, prints a table per model and writes
    OUT/<variant>/cases.jsonl (one line per case) and summary.json. Judge checks with no judge
    report "needs a judge" and count as not passed.
    """
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.eval.suite import load_suite
    from tuneloop.eval.suite_run import default_out_dir, print_table, run_suite

    suite = load_suite(suite_path)
    system = _system_prompt(system_prompt)
    shots = _few_shot(few_shot_path, k)
    names = _variant_names(models, prompted=bool(system or shots))
    out = Path(out_dir) if out_dir else default_out_dir(models[0], suite.name)
    failed = []
    for ref, name in zip(models, names, strict=True):
        result, _ = run_suite(suite, ref, out_dir=out, variant=name, system_prompt=system,
                              few_shot=shots, batch_size=batch_size, judge=judge, device=device)
        print_table(result)
        if not result.passed:
            failed.append(name)
    click.echo(f"results: {out}")
    if failed:
        # raised, not ctx.exit(): the CLI's main turns TuneloopError into the exit code
        raise BelowThreshold(
            f"suite {suite.name!r} scored below its threshold ({suite.threshold:.0%}) for "
            f"{', '.join(failed)}", where=suite_path,
            fix=f"see the failed cases in {out}/<variant>/cases.jsonl")


@eval_group.command("compare")
@click.option("--base", default=None,
              help="Base model reference (default: the base model the tuned run names).")
@click.option("--tuned", required=True, help="The fine-tuned run directory (or model ref).")
@click.option("--suite", "suite_path", required=True, type=click.Path(dir_okay=False),
              help="Suite YAML every variant runs.")
@_system_option
@_few_shot_option
@_k_option
@click.option("--data", "data", multiple=True,
              help="Held-out data file for loss/perplexity per variant (repeatable).")
@click.option("--max-length", type=click.IntRange(2), default=1024, show_default=True,
              help="Max tokens per held-out example (prompt side cut first, as in training).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output dir (default: TUNED/evals/compare-<suite>-<time>).")
@click.option("--judge", default=None, help="Judge for `judge` checks (model ref or "
              "openai:URL#model).")
@_gen_batch_option
@_device_option
def compare_cmd(base: str | None, tuned: str, suite_path: str, system_prompt: str | None,
                few_shot_path: str | None, k: int, data: tuple[str, ...], max_length: int,
                out_dir: str | None, judge: str | None, batch_size: int, device: str) -> None:
    """Prompt engineering vs fine-tuning: base, base + prompt, and tuned on the same suite.

    The base + prompt variant is the base model given --system-prompt and/or --few-shot examples
    (it is left out when neither is given). With --data, each variant's held-out loss is computed
    the same way training does. Prints the variants side by side and per-case wins/losses and
    writes OUT/compare.json (schema: docs/eval.md) plus OUT/<variant>/cases.jsonl.
    """
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.eval.compare import compare, print_compare

    result = compare(base=base, tuned=tuned, suite=suite_path,
                     system_prompt=_system_prompt(system_prompt),
                     few_shot=_few_shot(few_shot_path, k), data=list(data) or None,
                     out_dir=out_dir, batch_size=batch_size, judge=judge,
                     max_length=max_length, device=device)
    print_compare(result)


@eval_group.command("loss")
@click.option("--model", "models", multiple=True, required=True,
              help="Model reference; repeat for several.")
@click.option("--data", "data", multiple=True, required=True,
              help="Held-out data file (any format `tuneloop data check` reads); repeatable.")
@click.option("--max-length", type=click.IntRange(2), default=1024, show_default=True,
              help="Max tokens per example (prompt side cut first, as in training).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_batch_option
@_device_option
def loss_cmd(models: tuple[str, ...], data: tuple[str, ...], max_length: int, as_json: bool,
             batch_size: int, device: str) -> None:
    """Held-out loss and perplexity (same rendering and answer-only mask as training)."""
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.eval.loss import heldout_loss_for_ref

    rows = {}
    for ref in models:
        rows[ref] = heldout_loss_for_ref(ref, list(data), max_length=max_length,
                                         batch_size=batch_size, device=device).to_json()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"held-out loss on {', '.join(data)}")
    for col in ("model", "loss", "perplexity", "tokens", "examples", "dropped"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for ref, r in rows.items():
        dropped = ", ".join(f"{k}: {v}" for k, v in r["dropped"].items()) or "0"
        table.add_row(escape(ref), f"{r['loss']:.4f}", f"{r['perplexity']:.2f}",
                      str(r["n_tokens"]), str(r["n_examples"]), escape(dropped))
    Console().print(table)


@eval_group.command("mc")
@click.argument("items_path", metavar="FILE.jsonl", required=False,
                type=click.Path(dir_okay=False))
@click.option("--model", "model_ref", required=True, help="Model reference.")
@click.option("--prompt-format", default=None,
              help='Context format with {question}; \\n is a newline '
              '(default "Question: {question}\\nAnswer:").')
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write per-item loglikelihoods (items.jsonl) and summary.json here.")
@click.option("--lm-eval", "lm_eval_tasks", default=None,
              help="Also run these lm-evaluation-harness tasks (comma-separated) on the model.")
@_batch_option
@_device_option
def mc_cmd(items_path: str | None, model_ref: str, prompt_format: str | None,
           out_dir: str | None, lm_eval_tasks: str | None, batch_size: int,
           device: str) -> None:
    """Multiple-choice accuracy by loglikelihood, as lm-evaluation-harness scores it.

    FILE.jsonl rows: {"question": str, "choices": [str, ...], "answer": index}. Each choice is
    scored as " " + choice after the question; acc picks the highest loglikelihood, acc_norm
    divides it by the choice's length in characters. --lm-eval TASKS hands the same model to
    lm-evaluation-harness (installed separately) for its own tasks.
    """
    if items_path is None and lm_eval_tasks is None:
        raise UsageError("nothing to do: give FILE.jsonl and/or --lm-eval TASKS",
                         fix="tuneloop eval mc examples/mc/general.jsonl --model REF")
    if items_path is not None:
        _mc_file(items_path, model_ref, prompt_format, out_dir, batch_size, device)
    if lm_eval_tasks is not None:
        from lm_eval.utils import make_table  # imported here: lm-eval is optional

        # lazy: CLI start-up (every command module loads on each `tuneloop` call)
        from tuneloop.eval.mc import run_lm_eval

        results = run_lm_eval(model_ref, lm_eval_tasks, device=device, batch_size=batch_size)
        click.echo(make_table(results))


def _mc_file(items_path: str, model_ref: str, prompt_format: str | None, out_dir: str | None,
             batch_size: int, device: str) -> None:
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.eval.mc import PROMPT_FORMAT, load_mc_items, score_mc
    from tuneloop.index import record_eval
    from tuneloop.models import load_model, run_dir_of

    # a shell cannot easily pass a newline: "\n" in the option means one
    fmt = prompt_format.replace("\\n", "\n") if prompt_format else PROMPT_FORMAT
    try:
        ok = "{question}" in fmt and fmt.format(question="q") != fmt
    except (KeyError, IndexError, ValueError):
        ok = False
    if not ok:
        raise UsageError(f"--prompt-format must be a format with only {{question}}, got {fmt!r}",
                         fix="e.g. --prompt-format 'Q: {question}\\nA:' (double other braces)")
    items = load_mc_items(items_path)
    model, tokenizer = load_model(model_ref, device=device)
    result = score_mc(model, tokenizer, items, prompt_format=fmt, batch_size=batch_size)
    details = None
    if out_dir:
        out = Path(out_dir)
        if (out / "summary.json").exists():
            raise UsageError(f"results already exist in {out}", fix="pass a new --out directory")
        out.mkdir(parents=True, exist_ok=True)
        details = out / "items.jsonl"
        with details.open("w", encoding="utf-8") as f:
            for row in result.items:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        summary = {**result.summary(), "file": items_path, "model_ref": model_ref,
                   "prompt_format": fmt}
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    record_eval(model_ref=model_ref, kind="mc", name=Path(items_path).name, score=result.acc,
                n=result.n, details_path=details, run_dir=run_dir_of(model_ref),
                extra={"acc_norm": result.acc_norm, "prompt_format": fmt})
    click.echo(f"{Path(items_path).name}: acc {result.acc:.4f}  acc_norm {result.acc_norm:.4f}  "
               f"(n={result.n}, model {model_ref})")


def register(cli: click.Group) -> None:
    """Add the `eval` group (suite, compare, loss, mc; cli.py then adds judge from eval_judge)."""
    cli.add_command(eval_group)
