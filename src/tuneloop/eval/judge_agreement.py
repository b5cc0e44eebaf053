"""Judge versus people: match pairwise judge verdicts to human votes and measure agreement.

Human votes come from the arena (#9). This module owns reading the arena's documented export
format (`tuneloop arena export`, docs/arena.md: one decisive vote per line, `prompt`, `chosen`,
`rejected`, `chosen_model`, `rejected_model`, `prompt_id`, ...). Votes straight from an arena
database (ties and both-bad included) are read by the command layer through the arena's own store
and handed in as the same `HumanVote`s (eval does not import arena).

A human vote matches a judge verdict on the same prompt (the arena's `prompt_id` equal to the
question id, else the same user turns) and the same unordered model pair (arena model names equal
to the judge's model labels). The person may have seen the models in either order: every outcome
is turned into "which model won" before it is compared. Each matched human vote is one `Vote`
(several raters on one pair are several votes against the same judge verdict, as in MT-Bench);
`agreement` does the maths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.data.jsonl import read_jsonl_objects
from tuneloop.errors import EvalError
from tuneloop.eval.agreement import Vote, agreement
from tuneloop.eval.judge_stats import combine_pair

FEW_VOTES = 10  # below this many matched votes the intervals are too wide to read much into
EXAMPLE = ('{"prompt": [{"role": "user", "content": "..."}], "chosen": "...", "rejected": "...", '
           '"chosen_model": "tuned", "rejected_model": "base", "prompt_id": "q1"}')


@dataclass(frozen=True)
class HumanVote:
    """One person's vote: the models in the order shown and the outcome in those terms."""

    prompt_id: str | None
    turns: tuple[str, ...]  # the user turns of the prompt the person saw
    shown_a: str  # model shown first (left)
    shown_b: str
    winner: str  # "A" (shown_a better) | "B" | "tie" (tie or both bad: no preference)
    answer_a: str | None = None  # the answer texts the person read, where known
    answer_b: str | None = None
    where: str = ""

    def winning_model(self) -> str | None:
        """The preferred model's name, None for no preference."""
        return {"A": self.shown_a, "B": self.shown_b}.get(self.winner)


def user_turns(messages: Any, where: str) -> tuple[str, ...]:
    """The user turns of an arena prompt (a list of {"role", "content"}); EvalError if malformed."""
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in messages):
        raise EvalError("field 'prompt' must be a non-empty list of {\"role\", \"content\"} "
                        "messages", where=where,
                        fix='write the arena export row: "prompt": [{"role": "user", '
                            '"content": "..."}]')
    turns = tuple(m["content"] for m in messages if m["role"] == "user")
    if not turns:
        raise EvalError("field 'prompt' has no user turn", where=where,
                        fix="the prompt must end with the user's message")
    return turns


def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or (key.endswith("_model") and not value.strip()):
        got = "missing" if key not in row else f"got {type(value).__name__}"
        raise EvalError(f"field '{key}' must be a{' non-empty' if key.endswith('_model') else ''}"
                        f" string ({got})", where=where,
                        fix=f"pass the file `tuneloop arena export` wrote; a row looks like "
                            f"{EXAMPLE}")
    return value


def load_human_votes(path: str | Path) -> list[HumanVote]:
    """The votes in an arena export file (decisive votes only: the format carries no ties)."""
    votes = []
    for where, row in read_jsonl_objects(path, error=EvalError, example=EXAMPLE):
        turns = user_turns(row.get("prompt"), where)
        chosen, rejected = _text(row, "chosen", where), _text(row, "rejected", where)
        a, b = _text(row, "chosen_model", where), _text(row, "rejected_model", where)
        if a == b:
            raise EvalError(f"chosen_model and rejected_model are both {a!r}", where=where,
                            fix="a vote compares two different models")
        pid = row.get("prompt_id")
        if pid is not None and not isinstance(pid, (str, int)):
            raise EvalError("field 'prompt_id' must be a string", where=where,
                            fix='write "prompt_id": "q1" or leave it out')
        # The export does not keep which side each answer was shown on; the chosen one is "A".
        votes.append(HumanVote(None if pid is None else str(pid), turns, a, b, "A", chosen,
                               rejected, where))
    if not votes:
        raise EvalError("no votes in file", where=str(path),
                        fix="export the arena's votes with `tuneloop arena export --db DB --out "
                            "FILE` once some decisive votes are cast")
    return votes


def _judge_items(judgments: Sequence[dict]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(question id, model A, model B) → the judge's letter per order."""
    items: dict[tuple[str, str, str], dict[str, Any]] = {}
    for j in judgments:
        if j.get("mode") != "pairwise":
            continue
        key = (j["question_id"], j["model_a"], j["model_b"])
        items.setdefault(key, {})[j["order"]] = j["verdict"]
    return items


def _words(turns: Sequence[str]) -> int:
    return sum(len(t.split()) for t in turns)


def judge_human_agreement(questions: Sequence[Any], judgments: Sequence[dict],
                          answers: dict[str, list[list[str]]], human: Sequence[HumanVote], *,
                          seed: int = 0, n_boot: int = 1000) -> dict[str, Any]:
    """Match `human` votes to the pairwise `judgments` and measure agreement.

    `questions` have `.id` and `.turns`; `answers` holds each model label's answers in question
    order (their word counts give the length bias). Returns `agreement(...)`'s figures plus the
    matching counts and warnings.
    """
    items = _judge_items(judgments)
    by_pair: dict[tuple[str, frozenset[str]], tuple[str, str, str]] = {
        (qid, frozenset((a, b))): (qid, a, b) for qid, a, b in items}
    ids = {q.id: q for q in questions}
    by_text: dict[tuple[str, ...], list[str]] = {}
    for q in questions:
        by_text.setdefault(tuple(q.turns), []).append(q.id)
    index = {q.id: i for i, q in enumerate(questions)}

    votes: list[Vote] = []
    matched_items: set[tuple[str, str, str]] = set()
    unmatched = {"prompt_not_judged": 0, "model_pair_not_judged": 0,
                 "judge_verdict_unparseable": 0}
    answers_differ = 0
    for h in human:
        if h.prompt_id is not None and h.prompt_id in ids:
            qid = h.prompt_id
        elif len(by_text.get(h.turns, [])) == 1:
            qid = by_text[h.turns][0]
        else:
            unmatched["prompt_not_judged"] += 1
            continue
        key = by_pair.get((qid, frozenset((h.shown_a, h.shown_b))))
        if key is None:
            unmatched["model_pair_not_judged"] += 1
            continue
        _, la, lb = key
        letters = items[key]
        judged = combine_pair(letters.get("AB"), letters.get("BA")).outcome
        if judged is None:
            unmatched["judge_verdict_unparseable"] += 1
            continue
        matched_items.add(key)
        won = h.winning_model()
        human_outcome = "tie" if won is None else ("A" if won == la else "B")
        i = index[qid]
        ans_a, ans_b = answers[la][i], answers[lb][i]
        seen = {h.shown_a: h.answer_a, h.shown_b: h.answer_b}
        if any(text is not None and text.strip() != mine[-1].strip()
               for text, mine in ((seen[la], ans_a), (seen[lb], ans_b))):
            answers_differ += 1
        votes.append(Vote(qid, la, lb, human_outcome, judged, len_a=_words(ans_a),
                          len_b=_words(ans_b), judge_ab=_letter(letters.get("AB")),
                          judge_ba=_letter(letters.get("BA"))))

    judged_items = [k for k, v in items.items()
                    if combine_pair(v.get("AB"), v.get("BA")).outcome is not None]
    figures = agreement(votes, n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {
        "human_votes": len(human),
        "matched_votes": len(votes),
        "matched_pairs": len(matched_items),
        "judge_pairs": len(items),
        "judge_pairs_without_human_vote": sum(k not in matched_items for k in judged_items),
        "human_votes_without_judge_verdict": unmatched,
        "answers_differ": answers_differ,
        "few_votes": len(votes) < FEW_VOTES,
        **figures,
    }
    out["warnings"] = _warnings(out, human, items)
    return out


def _letter(verdict: Any) -> str | None:
    return verdict if verdict in ("A", "B", "C") else None


def _warnings(out: dict[str, Any], human: Sequence[HumanVote],
              items: dict[tuple[str, str, str], dict]) -> list[str]:
    warnings = []
    n = out["matched_votes"]
    if n == 0:
        people = sorted({m for h in human for m in (h.shown_a, h.shown_b)})
        judged = sorted({m for _, a, b in items for m in (a, b)})
        warnings.append(f"no human vote matched a judge verdict: the votes name models "
                        f"{', '.join(people)}; the judge compared {', '.join(judged)} (name the "
                        f"arena models like the judged ones, and judge the arena's prompts)")
    elif out["few_votes"]:
        warnings.append(f"only {n} matched vote(s) (fewer than {FEW_VOTES}): the 95% intervals "
                        f"are wide; collect more arena votes before trusting these figures")
    if out["answers_differ"]:
        warnings.append(f"{out['answers_differ']} matched vote(s) were cast on answer texts that "
                        f"differ from the ones the judge read (judge the arena's own answers to "
                        f"compare like with like)")
    return warnings


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ci(value: Any) -> str:
    return "" if not value else f" (95% CI {value[0]:.0%}-{value[1]:.0%})"


def agreement_lines(a: dict[str, Any]) -> list[str]:
    """The judge-vs-people figures as console lines (under the judge's summary table)."""
    kappa = "-" if a["cohen_kappa"] is None else f"{a['cohen_kappa']:.2f}"
    kci = a["cohen_kappa_ci95"]
    kci_text = "" if not kci else f" (95% CI {kci[0]:.2f} to {kci[1]:.2f})"
    pos, length = a["position_bias"], a["length_bias"]
    un = a["human_votes_without_judge_verdict"]
    matched = (f"agreement with people: {a['matched_votes']} of {a['human_votes']} human vote(s) "
               f"matched on {a['matched_pairs']} of {a['judge_pairs']} judged pair(s); without a "
               f"counterpart: {a['judge_pairs_without_human_vote']} judge verdict(s), "
               f"{sum(un.values())} human vote(s) ({un['prompt_not_judged']} prompt not judged, "
               f"{un['model_pair_not_judged']} model pair not judged, "
               f"{un['judge_verdict_unparseable']} judge verdict unparseable)")
    figures = (f"  agreement with ties {_pct(a['agreement_with_ties'])}"
               f"{_ci(a['agreement_with_ties_ci95'])}, without ties "
               f"{_pct(a['agreement_without_ties'])}{_ci(a['agreement_without_ties_ci95'])} over "
               f"{a['n_without_ties']} vote(s), Cohen's kappa {kappa}{kci_text}")
    bias = (f"  position bias: first-shown answer wins {_pct(pos['first_shown_win_rate'])} of the "
            f"judge's decided verdicts, wins in both orders in "
            f"{_pct(pos['first_shown_won_both_orders'])} of pairs; length bias: longer answer "
            f"wins {_pct(length['judge']['longer_win_rate'])} for the judge "
            f"({length['judge']['n']}), {_pct(length['human']['longer_win_rate'])} for people "
            f"({length['human']['n']})")
    lines = [matched, figures, bias]
    return lines


def compact(a: dict[str, Any]) -> dict[str, Any]:
    """The headline figures for the index row (the report reads them from there)."""
    keys = ("human_votes", "matched_votes", "matched_pairs", "judge_pairs",
            "judge_pairs_without_human_vote", "human_votes_without_judge_verdict",
            "answers_differ", "few_votes", "n_without_ties", "agreement_with_ties",
            "agreement_with_ties_ci95", "agreement_without_ties", "agreement_without_ties_ci95",
            "cohen_kappa", "cohen_kappa_ci95", "position_bias", "warnings")
    out = {k: a[k] for k in keys}
    out["judge_longer_win_rate"] = a["length_bias"]["judge"]["longer_win_rate"]
    out["human_longer_win_rate"] = a["length_bias"]["human"]["longer_win_rate"]
    return out


__all__ = ["FEW_VOTES", "HumanVote", "agreement_lines", "compact", "judge_human_agreement",
           "load_human_votes", "user_turns"]
