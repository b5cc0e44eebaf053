"""`tuneloop arena serve|results|export`: blind pairwise human votes, ratings, preference pairs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tuneloop.commands.listen import listen_options

_db_option = click.option(
    "--db", type=click.Path(dir_okay=False, path_type=Path), default=Path("arena.sqlite"),
    show_default=True, help="The arena's sqlite file (votes, answers, sessions).")


@click.group("arena")
def arena_group() -> None:
    """Human pairwise arena: raters vote on blind answer pairs; ratings and preference data."""


@arena_group.command("serve")
@click.option("--prompts", "prompts_path", required=True, type=click.Path(dir_okay=False),
              help='JSONL with {"prompt": ...} or {"messages": [...]} per line (optional "id").')
@click.option("--model", "models", multiple=True, required=True,
              help="[NAME=]SPEC: a model reference (alias, HF dir, run dir, hub id) or "
              "openai:URL#model; twice or more.")
@click.option("--system-prompt", "system_prompts", multiple=True, metavar="NAME=TEXT",
              help="Model NAME answers with this system prompt (prompts with their own system "
              "turn keep it); e.g. --model plain=REF --model prompted=REF "
              "--system-prompt prompted='Be concise.'")
@_db_option
@listen_options(port=8100, api_key_help="Access key raters type when they sign in")
@click.option("--max-votes", type=click.IntRange(min=1), default=None,
              help="Votes each rater may cast (default: no limit).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=256, show_default=True,
              help="Most tokens per answer.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.0, show_default=True,
              help="0 = greedy answers.")
@click.option("--seed", type=int, default=None, help="Sampling seed (with --temperature > 0).")
def serve_cmd(prompts_path: str, models: tuple[str, ...], system_prompts: tuple[str, ...],
              db: Path, host: str, port: int,
              api_key: str | None, insecure: bool, max_votes: int | None, max_new_tokens: int,
              temperature: float, seed: int | None) -> None:
    """Serve the arena: every model answers every prompt once, then raters vote in a browser.

    A battle shows one prompt and two anonymous answers (random pair, random sides); raters pick
    A, B, tie or both bad (keys A, B, T, X), and see the model names after voting. Answers and
    votes live in --db, so a restart generates nothing twice. Binds 127.0.0.1 by default.
    """
    from tuneloop.arena.server import serve_arena
    from tuneloop.backends import GenParams

    params = GenParams(max_tokens=max_new_tokens, temperature=temperature, seed=seed)
    serve_arena(prompts_path, models, db=db, host=host, port=port, api_key=api_key,
                insecure=insecure, max_votes=max_votes, params=params,
                system_args=system_prompts)


@arena_group.command("results")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print the results document as JSON.")
@click.option("--bootstrap", "rounds", type=click.IntRange(min=10), default=1000,
              show_default=True, help="Bootstrap resamples for the 95% intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--anchor", default=None,
              help="Model pinned at 1000 (default: the mean rating is 1000).")
def results_cmd(db: Path, as_json: bool, rounds: int, seed: int, anchor: str | None) -> None:
    """Bradley-Terry ratings with 95% intervals, Elo, win rates and rater agreement."""
    from tuneloop.arena.results import arena_results

    doc = arena_results(db, rounds=rounds, seed=seed, anchor=anchor)
    if as_json:
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    _print_results(doc)


PIPED_WIDTH = 4000  # columns for `arena results` when stdout is not a terminal


def _num(value: float | None, spec: str = ".0f") -> str:
    return "—" if value is None else format(value, spec)


def _print_results(doc: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped or redirected: rich would assume 80 columns and cut or wrap model names (run
        # directory names are long); tables only take the width they need, so give them room.
        console = Console(highlight=False, width=PIPED_WIDTH)
    console.print(f"{doc['votes']} vote(s) from {doc['raters']} rater(s): {doc['decisive']} "
                  f"decisive, {doc['ties']} tie(s), {doc['both_bad']} both bad", markup=False)
    if not doc["votes"]:
        console.print("no votes yet: open the arena (`tuneloop arena serve`) and rate a few "
                      "battles", markup=False)
        return
    table = Table(title="Bradley-Terry ratings (95% bootstrap interval) and online Elo (K=4)")
    for col in ("rank", "model", "rating", "95% interval", "elo", "votes", "wins", "losses",
                "ties", "both bad"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in doc["ratings"]:
        interval = ("—" if r["ci_low"] is None
                    else f"{r['ci_low']:.0f} – {r['ci_high']:.0f}")
        table.add_row(_num(r["rank"], "d"), r["model"], _num(r["rating"]), interval,
                      _num(r["elo"]), str(r["votes"]), str(r["wins"]), str(r["losses"]),
                      str(r["ties"]), str(r["both_bad"]))
    console.print(table, markup=False)
    if doc["mle_exists"] is False:
        console.print("note: some model never lost (or groups were never compared): no exact "
                      "maximum-likelihood fit exists, ratings use a weak prior", markup=False)
    models = [r["model"] for r in doc["ratings"]]  # best first, as in the ratings table
    wins = Table(title="Win rate of row over column (ties count half; n in brackets)")
    wins.add_column("")
    for m in models:
        wins.add_column(m, justify="right")
    for m in models:
        cells = []
        for o in models:
            cell = doc["win_rates"][m].get(o) if o != m else None
            cells.append("—" if cell is None else f"{cell['win_rate']:.0%} ({cell['n']})")
        wins.add_row(m, *cells)
    console.print(wins, markup=False)
    raters = Table(title="Raters")
    for col in ("rater", "votes", "decisive", "ties", "both bad", "agree with others",
                "agree with ratings"):
        raters.add_column(col, justify="left" if col == "rater" else "right")
    for r in doc["per_rater"]:
        def share(a: dict) -> str:
            return "—" if not a["n"] else f"{a['rate']:.0%} of {a['n']}"
        raters.add_row(r["rater"], str(r["votes"]), str(r["decisive"]), str(r["ties"]),
                       str(r["both_bad"]), share(r["with_others"]), share(r["with_ratings"]))
    console.print(raters, markup=False)


@arena_group.command("export")
@_db_option
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="JSONL file of preference pairs to write.")
def export_cmd(db: Path, out: Path) -> None:
    """Write decisive votes as preference pairs: prompt, chosen, rejected (+ models, vote ids).

    The format `objective: dpo` training reads. Ties and both-bad votes carry no preference and are
    counted, not written.
    """
    from tuneloop.arena.export import export_preferences

    summary = export_preferences(db, out)
    click.echo(f"wrote {summary.pairs} preference pair(s) to {summary.out} "
               f"(left out: {summary.ties} tie(s), {summary.both_bad} both-bad)")


def register(cli: click.Group) -> None:
    """Add the `arena` group to the CLI."""
    cli.add_command(arena_group)
