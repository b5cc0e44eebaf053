"""Does the judge tell good answers from bad ones? A discrimination check before its scores count.

A judge that rates everything 8, or always prefers the first answer, still produces a table of
scores with confidence intervals. This check shows it up on the run's own questions: each
question's known-good answer (the reference where the question has one, turn by turn, else the
judged model's answer) is set against known-bad ones made from it:

- `dont_know`: "I don't know." for every turn;
- `empty`: an empty answer;
- `other_question`: the good answer of another question (right form, wrong content);
- `truncated`: the good answer cut to its first third of words, mid-sentence.

single mode judges the good and each bad answer on their own: a pair is ranked correctly when
the good one scores strictly higher (a tie is not). pairwise shows each pair in both orders: it
is correct when the good answer wins both (the both-orders rule of `combine_pair`). A pair with
an unparseable verdict is excluded and counted (R18). The share correct, with its 95 % Wilson
interval, decides whether the judge is trusted (thresholds below, documented in docs/eval.md).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.backends import Generator, GenParams, Messages, make_generator
from tuneloop.errors import EvalError
from tuneloop.eval.judge import (
    TOP_LOGPROBS,
    Question,
    judge_verdicts,
    pair_messages,
    prompt_loader,
    single_messages,
)
from tuneloop.eval.judge_stats import combine_pair
from tuneloop.eval.stats import format_interval, wilson_interval

BAD_KINDS = ("dont_know", "empty", "other_question", "truncated")
DONT_KNOW = "I don't know."
# A judge is trusted when it ranks at least 70 % of the pairs correctly AND the 95 % Wilson
# interval of that share lies above 0.5 (chance for a coin-flip judge). The bad answers are
# blatant, so a useful judge gets nearly all right; 0.7 leaves room for the harder truncated and
# wrong-question cases; the interval rule refuses to call a judge trusted on too few pairs.
MIN_SHARE = 0.7
MIN_LOWER = 0.5
MIN_TRUNCATE_WORDS = 6  # a shorter good answer has no meaningful "first third"
CHECK_FILE = "judge_check.json"
CHECK_JUDGMENTS_FILE = "judge_check.jsonl"


@dataclass(frozen=True)
class Probe:
    """One known-good answer against one known-bad one, for one question."""

    question: Question
    kind: str
    good: list[str]
    bad: list[str]
    good_source: str  # "reference" | "answers" | "reference+answers"


@dataclass
class JudgeCheck:
    """The check's summary (what the judge summary, index and report carry) and its judgments."""

    summary: dict[str, Any]
    judgments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trusted(self) -> bool:
        """Whether the judge passed the check."""
        return bool(self.summary["trusted"])

    def write(self, out: str | Path) -> Path:
        """judge_check.json (the summary) and judge_check.jsonl (every raw judge output)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / CHECK_FILE).write_text(json.dumps(self.summary, indent=2) + "\n",
                                      encoding="utf-8")
        (out / CHECK_JUDGMENTS_FILE).write_text(
            "".join(json.dumps(j, ensure_ascii=False) + "\n" for j in self.judgments),
            encoding="utf-8")
        return out


def _good_answer(q: Question, answers: list[str] | None) -> tuple[list[str] | None, str]:
    """Per turn the reference where it is given, else the judged answer (None when neither)."""
    ref = q.reference or []
    turns: list[str] = []
    used: set[str] = set()
    for k in range(len(q.turns)):
        if k < len(ref) and ref[k].strip():
            turns.append(ref[k])
            used.add("reference")
        elif answers is not None and k < len(answers) and answers[k].strip():
            turns.append(answers[k])
            used.add("answers")
        else:
            return None, ""
    return turns, "+".join(sorted(used, key=("reference", "answers").index))


def _truncate(text: str) -> str:
    words = text.split()
    return " ".join(words[: max(1, len(words) // 3)])


def build_probes(questions: Sequence[Question], answers: Sequence[list[str]] | None = None
                 ) -> tuple[list[Probe], Counter]:
    """The good/bad pairs for `questions` (`answers`: judged answers in question order), and
    the probes that could not be built, counted by reason."""
    if answers is not None and len(answers) != len(questions):
        raise EvalError(f"{len(answers)} answers for {len(questions)} questions",
                        fix="give one answer (list of turns) per question")
    skipped: Counter = Counter()
    goods: list[tuple[Question, list[str], str]] = []
    for i, q in enumerate(questions):
        good, source = _good_answer(q, None if answers is None else answers[i])
        if good is None:
            skipped["no_good_answer"] += len(BAD_KINDS)
        else:
            goods.append((q, good, source))
    probes: list[Probe] = []
    for i, (q, good, source) in enumerate(goods):
        n = len(q.turns)
        bads: dict[str, list[str] | None] = {
            "dont_know": [DONT_KNOW] * n,
            "empty": [""] * n,
            "other_question": None,
            "truncated": None,
        }
        if len(goods) > 1:
            other = goods[(i + 1) % len(goods)][1]  # the next question's, cycling: deterministic
            candidate = [other[k % len(other)] for k in range(n)]
            if candidate != good:
                bads["other_question"] = candidate
        if sum(len(t.split()) for t in good) >= MIN_TRUNCATE_WORDS:
            bads["truncated"] = [_truncate(t) for t in good]
        for kind in BAD_KINDS:
            bad = bads[kind]
            if bad is None or bad == good:
                skipped[kind] += 1
                continue
            probes.append(Probe(q, kind, good, bad, source))
    return probes, skipped


def judge_discrimination(judge: str | Generator, questions: Sequence[Question], *,
                         mode: str = "single", answers: Sequence[list[str]] | None = None,
                         judge_params: GenParams | None = None,
                         prompt_dir: str | Path | None = None, scoring: str = "auto",
                         explanation: bool = True, top_logprobs: int = TOP_LOGPROBS,
                         progress: Any = None) -> JudgeCheck:
    """Rank known-good answers against known-bad ones with `judge`; the share it gets right.

    `answers` are the judged answers (question order), the good answers where a question has no
    reference. Settings are the judge run's own, so the check measures the judge as it is used.
    """
    if mode not in ("single", "pairwise"):
        raise EvalError(f"unknown judge mode {mode!r}", fix="use --mode single or pairwise")
    gen = make_generator(judge) if isinstance(judge, str) else judge
    params = judge_params or GenParams(max_tokens=512)
    probes, skipped = build_probes(questions, answers)
    prompt_for = prompt_loader(mode, prompt_dir)

    jobs: list[tuple[dict[str, Any], Messages]] = []
    if mode == "single":
        seen: set[str] = set()
        for p in probes:
            if p.question.id not in seen:  # each question's good answer is judged once
                seen.add(p.question.id)
                jobs.append(({"question_id": p.question.id, "answer": "good"},
                             single_messages(p.question, p.good, prompt_for(p.question))))
            jobs.append(({"question_id": p.question.id, "answer": p.kind},
                         single_messages(p.question, p.bad, prompt_for(p.question))))
    else:
        for p in probes:
            pr = prompt_for(p.question)
            base = {"question_id": p.question.id, "kind": p.kind}
            jobs.append(({**base, "order": "good_first"},
                         pair_messages(p.question, p.good, p.bad, pr)))
            jobs.append(({**base, "order": "bad_first"},
                         pair_messages(p.question, p.bad, p.good, pr)))
    task = None
    if progress is not None:
        task = progress.add_task("judge check", total=len(jobs))
    verdicts = judge_verdicts(gen, [m for _, m in jobs], mode, params, scoring=scoring,
                              explanation=explanation, top_logprobs=top_logprobs,
                              progress=progress, task=task) if jobs else []
    judgments = [{**meta, "mode": mode, "judge": gen.name, **v} for (meta, _), v in
                 zip(jobs, verdicts)]

    outcomes: list[tuple[Probe, bool | None]] = []
    if mode == "single":
        score = {(j["question_id"], j["answer"]): j["verdict"] for j in judgments}
        for p in probes:
            g, b = score[(p.question.id, "good")], score[(p.question.id, p.kind)]
            outcomes.append((p, None if g is None or b is None else g > b))
    else:
        letters = {(j["question_id"], j["kind"], j["order"]): j["verdict"] for j in judgments}
        for p in probes:
            o = combine_pair(letters[(p.question.id, p.kind, "good_first")],
                             letters[(p.question.id, p.kind, "bad_first")]).outcome
            outcomes.append((p, None if o is None else o == "A"))
    return JudgeCheck(_summary(mode, gen.name, probes, outcomes, skipped), judgments)


def _summary(mode: str, judge: str, probes: list[Probe],
             outcomes: list[tuple[Probe, bool | None]], skipped: Counter) -> dict[str, Any]:
    scored = [ok for _, ok in outcomes if ok is not None]
    n, correct = len(scored), sum(scored)
    lo, hi = wilson_interval(correct, n)
    share = correct / n if n else None
    by_kind = {}
    for kind in BAD_KINDS:
        mine = [ok for p, ok in outcomes if p.kind == kind and ok is not None]
        by_kind[kind] = {"n": len(mine), "correct": sum(mine)}
    if n == 0:
        verdict = "no_verdicts"
    elif share < MIN_SHARE:
        verdict = "not_discriminating"
    elif lo < MIN_LOWER:
        verdict = "too_few_pairs"
    else:
        verdict = "discriminating"
    trusted = verdict == "discriminating"
    sources = Counter(p.good_source for p in probes)
    summary: dict[str, Any] = {
        "mode": mode, "judge": judge, "n": n, "correct": correct, "share": share,
        "ci95": [lo, hi], "excluded_unparseable": len(outcomes) - n, "probes": len(probes),
        "by_kind": by_kind, "skipped": dict(skipped), "good_answers_from": dict(sources),
        "thresholds": {"min_share": MIN_SHARE, "min_ci95_lower": MIN_LOWER},
        "verdict": verdict, "trusted": trusted,
    }
    summary["message"] = check_message(summary)
    return summary


def check_message(summary: dict[str, Any]) -> str:
    """One plain sentence: how well the judge ranked good above bad, and whether to trust it."""
    what = "scored known-good answers above known-bad ones" if summary["mode"] == "single" \
        else "preferred known-good answers to known-bad ones (both orders)"
    n, correct = summary["n"], summary["correct"]
    figures = f"in {correct} of {n} pairs ({format_interval(correct, n)})" if n else ""
    excluded = summary.get("excluded_unparseable") or 0
    tail = f"; {excluded} pair(s) unparseable, excluded" if excluded else ""
    verdict = summary["verdict"]
    if verdict == "discriminating":
        return f"judge check passed: the judge {what} {figures}{tail}."
    if verdict == "no_verdicts":
        return (f"judge check failed: the judge gave no usable verdict on {summary['probes']} "
                f"good/bad pair(s){tail}; it is not discriminating and its scores are not to "
                "be trusted.")
    if verdict == "not_discriminating":
        return (f"judge check failed: the judge {what} only {figures}{tail}; it is not "
                f"discriminating (needs ≥ {MIN_SHARE:.0%}) and its scores are not to be "
                "trusted.")
    return (f"judge check failed: the judge {what} {figures}{tail}, but so few pairs cannot "
            f"show it beats chance (the interval's lower bound is under {MIN_LOWER:.0%}); its "
            "scores are not to be trusted yet. Judge more questions.")


def compact(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """The headline figures for an index row's extra and the report."""
    if not summary:
        return None
    keys = ("share", "ci95", "n", "correct", "verdict", "trusted", "message")
    return {k: summary.get(k) for k in keys}


__all__ = ["BAD_KINDS", "DONT_KNOW", "MIN_LOWER", "MIN_SHARE", "JudgeCheck", "Probe",
           "build_probes", "check_message", "compact", "judge_discrimination"]
