"""`tuneloop eval judge`: grade model answers with an LLM judge (single or pairwise)."""

from __future__ import annotations

import click

from tuneloop.commands.eval import eval_group


@click.command("judge")
@click.option("--questions", "questions_path", required=True, type=click.Path(dir_okay=False),
              help='JSONL rows {"id", "question" | "turns": [...], "reference"?, "category"?}.')
@click.option("--model", "models", multiple=True,
              help="Model to answer (ref or openai:URL#model); repeat for several. With "
                   "--answers: a model_id from those files (judged, not generated).")
@click.option("--answers", "answer_paths", multiple=True, type=click.Path(dir_okay=False),
              help="Existing answers to judge (no generation): FastChat model-answer JSONL "
                   "({question_id, model_id, choices[0].turns}) or tuneloop's answers.jsonl; "
                   "repeatable. Without --model, every model in them is judged.")
@click.option("--judge", "judge", required=True, help="Judge model: ref or openai:URL#model.")
@click.option("--mode", type=click.Choice(["single", "pairwise"]), default="single",
              show_default=True)
@click.option("--reference", "reference_path", type=click.Path(dir_okay=False), default=None,
              help='Reference answers: JSONL rows {"id", "reference": str | [...]} or FastChat '
                   'reference-answer rows ({question_id, choices[0].turns}).')
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output directory (default: <home>/evals/judge-<time>).")
@click.option("--max-tokens", default=256, show_default=True, type=click.IntRange(1),
              help="Answer length limit.")
@click.option("--judge-max-tokens", default=512, show_default=True, type=click.IntRange(1))
@click.option("--prompts", "prompt_dir", type=click.Path(file_okay=False, exists=True),
              default=None, help="Directory of judge prompt YAML files overriding the shipped ones.")
@click.option("--seed", default=0, show_default=True, help="Bootstrap seed.")
@click.option("--scoring", type=click.Choice(["auto", "parse"]), default="auto",
              show_default=True,
              help="auto: verdicts from the judge's token probabilities where it reports them "
                   "(local judges; servers answering top_logprobs), else parsed; parse: always "
                   "parse the [[...]] verdict from the text.")
@click.option("--no-explanation", "no_explanation", is_flag=True,
              help="Ask for the verdict alone: the judge continues 'Rating: [[' / 'Verdict: [[' "
                   "(fast; the probabilities are read at that first token).")
@click.option("--human-votes", "human_votes_path", type=click.Path(dir_okay=False),
              default=None,
              help="People's votes on the same pairs (pairwise): the file `tuneloop arena export` "
                   "wrote, or the arena's --db file itself (ties included). The summary then "
                   "shows the judge's agreement with people.")
@click.option("--check-judge", "check_only", is_flag=True,
              help="Run only the judge's discrimination check (known-good answers against "
                   "known-bad ones on these questions) and stop.")
@click.option("--no-check-judge", "no_check", is_flag=True,
              help="Skip the discrimination check that runs before judging.")
@click.option("--strict", is_flag=True,
              help="Exit non-zero when the judge fails the discrimination check.")
def judge_cmd(questions_path: str, models: tuple[str, ...], answer_paths: tuple[str, ...],
              judge: str, mode: str,
              reference_path: str | None, out_dir: str | None, max_tokens: int,
              judge_max_tokens: int, prompt_dir: str | None, seed: int, scoring: str,
              no_explanation: bool, human_votes_path: str | None, check_only: bool,
              no_check: bool, strict: bool) -> None:
    """Answer QUESTIONS with each --model and grade the answers with --judge.

    single: a 1-10 [[rating]] per answer, mean with a bootstrap 95% CI. pairwise: every pair of
    models, judged in both orders; a different winner per order, or a tie in either, is a tie.
    Win rate = (wins + ties/2) / n. Unparseable verdicts are excluded and counted. Writes
    answers.jsonl, judgments.jsonl (raw judge outputs) and summary.json. With --human-votes
    (pairwise), the judge's agreement with people on the same (prompt, model pair) is added.

    First the judge must earn trust: on these questions it ranks known-good answers (the
    reference, else the first model's answer) against known-bad ones ("I don't know.", empty,
    another question's answer, truncated). Under 70% right, or a 95% interval reaching below
    50%, it is reported as not discriminating (--strict: exit 1). judge_check.json holds it.
    """
    import time
    from pathlib import Path

    from rich.console import Console
    from rich.progress import Progress

    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.backends import GenParams, make_generator
    from tuneloop.errors import UsageError
    from tuneloop.eval.judge import (
        answers_for,
        collect_answers,
        load_answers,
        load_questions,
        load_references,
        run_judge,
        summary_table,
        summary_warnings,
    )
    from tuneloop.eval.judge_agreement import agreement_lines
    from tuneloop.eval.judge_check import judge_discrimination
    from tuneloop.workspace import workspace_home

    if human_votes_path and mode != "pairwise":
        raise UsageError("--human-votes needs pairwise verdicts", fix="add --mode pairwise")
    if check_only and no_check:
        raise UsageError("--check-judge and --no-check-judge contradict each other",
                         fix="pass one of them")
    questions = load_questions(questions_path)
    human = _human_votes(human_votes_path) if human_votes_path else None
    if reference_path:
        refs = load_references(reference_path)
        for q in questions:
            q.reference = refs.get(q.id, q.reference)
    given: dict[str, dict[str, list[str]]] = {}
    for path in answer_paths:
        for model_id, rows in load_answers(path).items():
            given.setdefault(model_id, {}).update(rows)
    fully_referenced = all(q.reference and len(q.reference) >= len(q.turns)
                           and all(r.strip() for r in q.reference[:len(q.turns)])
                           for q in questions)
    if not models and not given and not (check_only and fully_referenced):
        if check_only:
            raise UsageError("the judge check needs a known-good answer for every question: "
                             "some have no reference", fix="pass --reference FILE, or --model / "
                             "--answers FILE whose answers stand in for the missing references")
        raise UsageError("no model to judge", fix="pass --model (to generate answers) or "
                         "--answers FILE (to judge existing ones)")
    models = models or tuple(given)
    answers = {m: answers_for(questions, given[m], m) for m in models if m in given}
    out = Path(out_dir) if out_dir else (
        workspace_home() / "evals" / f"judge-{time.strftime('%Y%m%d-%H%M%S')}")
    judge_params = GenParams(max_tokens=judge_max_tokens)
    judge_gen = make_generator(judge)
    console = Console()
    check = None
    if not no_check:
        # The check's good answers are the references, else the first model's answers: only
        # those are generated before judging (the rest follow in run_judge, as before).
        needed = models[:1] if models and not fully_referenced else ()
        with Progress(transient=True) as progress:
            answers.update(collect_answers(questions, needed, answers,
                                           GenParams(max_tokens=max_tokens), progress=progress))
            check = judge_discrimination(
                judge_gen, questions, mode=mode,
                answers=answers[needed[0]] if needed else None, judge_params=judge_params,
                prompt_dir=prompt_dir, scoring=scoring, explanation=not no_explanation,
                progress=progress)
        check.write(out)
        style = "green" if check.trusted else "bold red"
        console.print(f"[{style}]{check.summary['message']}[/{style}]", highlight=False)
        if check_only:
            console.print(f"Written to {out}")
            _fail_if_strict(check, strict, out)
            return
    run = run_judge(questions, list(models), judge_gen, mode=mode, out_dir=out,
                    answer_params=GenParams(max_tokens=max_tokens), judge_params=judge_params,
                    prompt_dir=prompt_dir, seed=seed, scoring=scoring, answers=answers,
                    explanation=not no_explanation, human_votes=human,
                    judge_check=None if check is None else check.summary)
    _record(run.summary, out)
    console.print(summary_table(run.summary))
    for warning in summary_warnings(run.summary):
        console.print(f"[yellow]warning:[/yellow] {warning}")
    s = run.summary
    if "human_agreement" in s:
        for line in agreement_lines(s["human_agreement"]):
            console.print(line, highlight=False, markup=False)
        for warning in s["human_agreement"]["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {warning}")
    m = s["verdicts_by_method"]
    console.print(f"{m['probability']} verdicts from the judge's token probabilities, "
                  f"{m['parsed']} parsed from its text.")
    console.print(f"{s['unparseable_outputs']} of {s['judge_outputs']} judge outputs were "
                  f"unparseable (excluded, not scored). Written to {out}")
    if check is not None:
        _fail_if_strict(check, strict, out)


def _fail_if_strict(check, strict: bool, out) -> None:
    """--strict: a judge that failed its discrimination check is an error (outputs are kept)."""
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.errors import EvalError

    if strict and not check.trusted:
        raise EvalError(f"--strict: {check.summary['message']}",
                        where=str(out / "judge_check.json"),
                        fix="use a stronger judge (a larger model, or one given top_logprobs), "
                        "or judge more questions; drop --strict to keep the scores anyway")


def _human_votes(path: str) -> list:
    """Human votes from an arena export file, or from the arena database itself (sqlite)."""
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from pathlib import Path

    from tuneloop.eval.judge_agreement import load_human_votes

    try:
        with open(path, "rb") as fh:
            is_db = fh.read(16) == b"SQLite format 3\x00"
    except OSError:
        is_db = False  # the reader says what is wrong with the path
    return _arena_db_votes(Path(path)) if is_db else load_human_votes(path)


def _arena_db_votes(db) -> list:
    """Every vote in an arena database (ties and both-bad as no preference), read by the arena's
    own store; the sides are kept as shown."""
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.arena.store import open_existing
    from tuneloop.errors import EvalError
    from tuneloop.eval.judge_agreement import HumanVote, user_turns

    store = open_existing(db)
    try:
        votes = []
        for v in store.votes():
            where = f"{db} (vote {v['vote_id']})"
            pid, a, b = v["prompt_id"], v["model_a"], v["model_b"]
            winner = {"a": "A", "b": "B"}.get(v["winner"], "tie")
            votes.append(HumanVote(pid, user_turns(store.prompt_messages(pid), where), a, b,
                                   winner, store.answer(pid, a), store.answer(pid, b), where))
    finally:
        store.close()
    if not votes:
        raise EvalError("no votes in the arena database", where=str(db),
                        fix="vote in `tuneloop arena serve --db ...` first")
    return votes


def _record(summary: dict, out) -> None:
    """One index row per model (single) or per pair (pairwise, from model A's side)."""
    # lazy: CLI start-up (every command module loads on each `tuneloop` call)
    from tuneloop.eval.judge_agreement import compact
    from tuneloop.eval.judge_check import compact as compact_check
    from tuneloop.eval.judge_selfpref import run_dir_of_spec
    from tuneloop.index import record_eval

    name = f"judge-{summary['mode']}"
    check = compact_check(summary.get("judge_check"))
    warn = {w["model"]: w for w in summary.get("self_preference") or []}
    human = compact(summary["human_agreement"]) if "human_agreement" in summary else None
    for r in summary["results"]:
        if summary["mode"] == "single":
            spec = summary["models"][r["model"]]
            record_eval(model_ref=spec, kind="judge", name=name, run_dir=run_dir_of_spec(spec),
                        score=r["mean"], n=r["n"], details_path=out / "summary.json",
                        extra={"judge": summary["judge"], "unparseable": r["unparseable"],
                               "ci95": r["ci95"], "mean_answer_words": r["mean_answer_words"],
                               "verdicts_by_method": summary["verdicts_by_method"],
                               "self_preference": warn.get(r["model"]),
                               "judge_check": check})
        else:
            spec = summary["models"][r["model_a"]]
            record_eval(model_ref=spec, kind="judge", name=name, run_dir=run_dir_of_spec(spec),
                        score=r["win_rate"], n=r["n"], details_path=out / "summary.json",
                        extra={"judge": summary["judge"], "opponent": r["model_b"],
                               "ties": r["ties"], "excluded": r["excluded"],
                               "flip_rate": r["flip_rate"], "ci95": r["ci95"],
                               "verdicts_by_method": summary["verdicts_by_method"],
                               "self_preference": warn.get(r["model_a"]),
                               "human_agreement": human, "judge_check": check})


def register(cli: click.Group) -> None:
    """Add `judge` to the `eval` group of tuneloop.commands.eval."""
    eval_group.add_command(judge_cmd)
