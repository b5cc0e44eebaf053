"""`tuneloop generate` and `tuneloop chat`: inference with the model's training template."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from tuneloop.errors import DataError
from tuneloop.infer.params import GenParams, ParamError, check_count

# Ranges are checked by GenParams (the one validator every generating path uses), before the
# model loads; a bad value is a usage error naming the flag.
_gen_options = [
    click.option("--max-new-tokens", type=int, default=256, show_default=True,
                 help="Most tokens generated per answer."),
    click.option("--temperature", type=float, default=0.0, show_default=True,
                 help="0 = greedy; up to 2 samples more freely."),
    click.option("--top-p", type=float, default=1.0,
                 show_default=True, help="Nucleus sampling mass (with --temperature > 0)."),
    click.option("--seed", type=int, default=None, help="Seed for sampling (reproducible runs)."),
    click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ..."),
]


_FLAGS = {"max_tokens": "--max-new-tokens", "temperature": "--temperature", "top_p": "--top-p",
          "seed": "--seed", "batch_size": "--batch-size"}


def _check_gen_options(max_new_tokens: int, temperature: float, top_p: float,
                       seed: int | None, batch_size: int = 1) -> None:
    """Validate the sampling flags with GenParams; a bad one is a UsageError naming the flag."""
    try:
        GenParams(max_new_tokens, temperature, top_p, seed)
        check_count("batch_size", batch_size)
    except ParamError as exc:
        raise exc.named(_FLAGS) from None


def _with_gen_options(fn: Any) -> Any:
    for opt in reversed(_gen_options):
        fn = opt(fn)
    return fn


def read_prompts(path: str, system_prompt: str | None = None) -> tuple[list[dict], list[list]]:
    """Read prompt rows ({"prompt": str} or {"messages": [...]}) → (rows, conversations).

    A trailing assistant message (a reference answer) is not sent to the model; it stays in the
    row. Errors name file:line and the field.
    """
    from tuneloop.data.jsonl import read_jsonl_objects

    rows: list[dict] = []
    prompts: list[list] = []
    for where, row in read_jsonl_objects(path, example='{"prompt": "..."} or {"messages": [...]}'):
        rows.append(row)
        prompts.append(_row_messages(row, where, system_prompt))
    if not prompts:
        raise DataError("no prompts in the file", where=path,
                        fix='add lines like {"prompt": "What is 2+2?"}')
    return rows, prompts


def _row_messages(row: dict, where: str, system_prompt: str | None) -> list[dict]:
    if isinstance(row.get("messages"), list):
        messages = []
        for k, m in enumerate(row["messages"]):
            if (not isinstance(m, dict) or not isinstance(m.get("role"), str)
                    or not isinstance(m.get("content"), str)):
                raise DataError(f"messages[{k}] needs string 'role' and 'content'", where=where,
                                fix='use {"role": "user", "content": "..."}')
            messages.append({"role": m["role"], "content": m["content"]})
        if messages and messages[-1]["role"] == "assistant":
            messages = messages[:-1]
        if not messages:
            raise DataError("messages has no prompt turn", where=where,
                            fix="include at least one user message")
    elif isinstance(row.get("prompt"), str):
        messages = [{"role": "user", "content": row["prompt"]}]
    else:
        got = ", ".join(sorted(row)) or "no fields"
        raise DataError(f"row needs a string 'prompt' or a 'messages' list (got {got})",
                        where=where, fix='write {"prompt": "..."} or {"messages": [...]}')
    if system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system_prompt}, *messages]
    return messages


@click.command("generate")
@click.option("--model", "ref", required=True, help="Model reference (alias, HF dir, hub id, run dir).")
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help='JSONL with {"prompt": ...} or {"messages": [...]} per line.')
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="JSONL written with each input row + output, n_tokens, finish_reason.")
@_with_gen_options
@click.option("--batch-size", type=int, default=8, show_default=True,
              help="Prompts generated together (left-padded, sorted by length).")
@click.option("--system-prompt", default=None, help="System message for rows that have none.")
def generate_cmd(ref: str, input_path: str, out: str, max_new_tokens: int, temperature: float,
                 top_p: float, seed: int | None, device: str, batch_size: int,
                 system_prompt: str | None) -> None:
    """Answer every prompt in --input with the model and write them to --out.

    Uses the template the model was trained with and stops at its end-of-turn token. A trailing
    assistant message in a "messages" row (a reference answer) is not sent to the model.
    """
    from tuneloop.infer.generate import generate, load_for_generation  # lazy: pulls torch
    from tuneloop.rundir import write_atomic  # lazy: CLI start-up

    _check_gen_options(max_new_tokens, temperature, top_p, seed, batch_size)
    rows, prompts = read_prompts(input_path, system_prompt)
    model, tokenizer, renderer = load_for_generation(ref, device)
    start = time.perf_counter()
    gens = generate(model, tokenizer, renderer, prompts, max_new_tokens=max_new_tokens,
                    temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size,
                    progress=True)
    elapsed = time.perf_counter() - start
    write_atomic(Path(out), "".join(  # never a half-written answers file
        json.dumps({**row, "output": gen.text, "n_tokens": gen.n_tokens,
                    "finish_reason": gen.finish_reason}, ensure_ascii=False) + "\n"
        for row, gen in zip(rows, gens)))
    tokens = sum(g.n_tokens for g in gens)
    cut = sum(g.finish_reason == "length" for g in gens)
    click.echo(f"wrote {len(gens)} answers to {out} ({tokens} tokens, "
               f"{tokens / max(elapsed, 1e-9):.1f} tokens/s; {cut} cut at --max-new-tokens)",
               err=True)


@click.command("chat")
@click.argument("ref")
@click.option("--system", default=None, help="System prompt (change it later with /system TEXT).")
@_with_gen_options
def chat_cmd(ref: str, system: str | None, max_new_tokens: int, temperature: float, top_p: float,
             seed: int | None, device: str) -> None:
    """Chat with REF in the terminal; replies stream as they are generated.

    Type a message and press Enter. /reset starts over, /system TEXT sets the system prompt,
    /exit (or Ctrl-D) quits.
    """
    from tuneloop.infer.chat import run_chat, terminal_lines
    from tuneloop.infer.generate import load_for_generation

    _check_gen_options(max_new_tokens, temperature, top_p, seed)
    model, tokenizer, renderer = load_for_generation(ref, device)
    interactive = sys.stdin.isatty()
    lines = terminal_lines() if interactive else sys.stdin
    run_chat(model, tokenizer, renderer, lines=lines, out=sys.stdout, system=system,
             interactive=interactive, max_new_tokens=max_new_tokens,
             temperature=temperature, top_p=top_p, seed=seed)


def register(cli: click.Group) -> None:
    """Add `generate` and `chat` to the CLI."""
    cli.add_command(generate_cmd)
    cli.add_command(chat_cmd)
