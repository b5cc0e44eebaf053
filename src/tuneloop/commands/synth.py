"""`tuneloop synth`: generate instruction data (Self-Instruct, document-grounded Q/A)."""

from __future__ import annotations

import click

_COMMON = [
    click.option("--generator", required=True,
                 help="Model that writes the data: a model ref or openai:URL#model."),
    click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
                 help="Output directory (rerun the same command to resume)."),
    click.option("--max-requests", default=None, type=click.IntRange(1),
                 help="Stop after this many generation requests in total (cached ones count)."),
    click.option("--seed", default=0, show_default=True, help="Sampling and example-order seed."),
    click.option("--prompts", "prompt_dir", type=click.Path(file_okay=False, exists=True),
                 default=None, help="Directory overriding the prompt files "
                 "(copy src/tuneloop/resources/synth/)."),
    click.option("--no-progress", is_flag=True, help="No progress bar."),
]


def _common(fn):
    for opt in reversed(_COMMON):
        fn = opt(fn)
    return fn


def _print_stats(stats: dict, out_dir: str) -> None:
    click.echo(f"stopped: {stats['stopped']}; accepted {stats['accepted']}, rejected "
               f"{stats['rejected_total']}; rows {stats['rows']['total']} (machine "
               f"{stats['rows']['machine']}, human {stats['rows']['human']}); requests "
               f"{stats['requests']['total']}")
    if stats["rejected"]:
        click.echo("rejected by reason: " + ", ".join(f"{k} {v}"
                                                     for k, v in stats["rejected"].items()))
    if stats.get("dropped_instances"):
        click.echo("dropped instances: " + ", ".join(
            f"{k} {v}" for k, v in stats["dropped_instances"].items()))
    methods = stats.get("judge_verdicts_by_method")
    if methods:
        click.echo(f"judge verdicts: {methods['probability']} from token probabilities, "
                   f"{methods['parsed']} parsed from text, {methods['unparseable']} unparseable")
    if stats.get("undecided_at_stop"):
        click.echo(f"{stats['undecided_at_stop']} candidate task(s) were waiting for requests "
                   "when the budget ran out (not rejected; a rerun with a larger --max-requests "
                   "decides them)")
    for item in stats.get("skipped_inputs") or []:
        what = ("holds no text" if item["reason"] == "empty_document" else
                f"chunk {item['chunk']} holds only headings ({item['heading'] or 'untitled'})")
        click.echo(f"warning: {item['document']}: {what}; not sent to the generator", err=True)
    click.echo(f"wrote {out_dir}/train.jsonl, rejects.jsonl ({stats.get('rejects_rows', 0)} "
               "rows: every reject and dropped instance), stats.json, manifest.json")


@click.group("synth")
def synth() -> None:
    """Generate synthetic instruction data (resumable, every row marked human/machine)."""


@synth.command("self-instruct")
@click.option("--seeds", "seeds_path", required=True, type=click.Path(dir_okay=False),
              help="Seed tasks: Self-Instruct JSONL (instruction, instances, is_classification) "
              "or Alpaca rows.")
@click.option("--target", default=100, show_default=True, type=click.IntRange(1),
              help="Machine-written tasks to accept.")
@click.option("--instances", default=2, show_default=True, type=click.IntRange(1, 5),
              help="Instances (rows) to keep per task.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1),
              help="Instruction requests per round (sent concurrently to a URL).")
@click.option("--max-tokens", default=512, show_default=True, type=click.IntRange(1),
              help="Token limit of an instruction-list answer.")
@click.option("--instance-max-tokens", default=512, show_default=True, type=click.IntRange(1))
@click.option("--temperature", default=0.7, show_default=True, type=click.FloatRange(0, 2))
@click.option("--top-p", default=0.95, show_default=True, type=click.FloatRange(0.01, 1))
@click.option("--no-seeds", is_flag=True, help="Do not copy the seed tasks into train.jsonl.")
@click.option("--threshold", default=0.7, show_default=True, type=click.FloatRange(0, 1),
              help="Drop a task whose ROUGE-L F1 to a seed or accepted task exceeds this.")
@_common
def self_instruct_cmd(seeds_path, target, instances, batch, max_tokens, instance_max_tokens,
                      temperature, top_p, no_seeds, threshold, generator, out_dir, max_requests,
                      seed, prompt_dir, no_progress) -> None:
    """Bootstrap new tasks from human seed tasks (Self-Instruct) into OUT/train.jsonl."""
    from tuneloop.synth.self_instruct import SelfInstructOptions, run_self_instruct

    opts = SelfInstructOptions(target=target, instances=instances, batch=batch, seed=seed,
                               threshold=threshold, max_requests=max_requests,
                               include_seeds=not no_seeds, max_tokens=max_tokens,
                               instance_max_tokens=instance_max_tokens, temperature=temperature,
                               top_p=top_p, prompt_dir=prompt_dir, progress=not no_progress)
    _print_stats(run_self_instruct(seeds_path, generator, out_dir, opts), out_dir)


@synth.command("docs")
@click.argument("documents", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--judge", default=None,
              help="Model that checks each pair (default: the generator).")
@click.option("--questions", default=3, show_default=True, type=click.IntRange(1),
              help="Question/answer pairs asked for per chunk.")
@click.option("--chunk-words", default=1000, show_default=True, type=click.IntRange(20),
              help="About this many words per chunk (cut at headings where possible).")
@click.option("--overlap", default=100, show_default=True, type=click.IntRange(0),
              help="Words repeated when a chunk is cut inside a section.")
@click.option("--max-tokens", default=512, show_default=True, type=click.IntRange(1))
@click.option("--judge-max-tokens", default=256, show_default=True, type=click.IntRange(1))
@click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(0, 2))
@click.option("--focus", default=None, help="Topics to target (added to the prompt).")
@_common
def docs_cmd(documents, judge, questions, chunk_words, overlap, max_tokens, judge_max_tokens,
             temperature, focus, generator, out_dir, max_requests, seed, prompt_dir,
             no_progress) -> None:
    """Question/answer rows grounded in DOCUMENTS (Markdown, text, PDF), checked by a judge.

    The judge's YES/NO verdicts come from its token probabilities where the backend gives them
    (else parsed from its text). Empty documents and heading-only chunks are not sent; they are
    listed as warnings and in stats.json (skipped_inputs).
    """
    from tuneloop.synth.docs import DocsOptions, run_docs

    # No --threshold here: the ROUGE-L threshold only applies to texts a library caller asks to
    # avoid (iterate passes the eval suite's questions); kept questions drop exact repeats only.
    opts = DocsOptions(questions=questions, chunk_words=chunk_words, overlap=overlap,
                       max_requests=max_requests, max_tokens=max_tokens,
                       judge_max_tokens=judge_max_tokens, temperature=temperature, seed=seed,
                       prompt_dir=prompt_dir, progress=not no_progress)
    _print_stats(run_docs(documents, generator, out_dir, judge=judge, options=opts, focus=focus),
                 out_dir)


def register(cli: click.Group) -> None:
    """Add `synth` to the CLI."""
    cli.add_command(synth)
