"""The LLM judge: single-answer grading, pairwise comparison (both orders), rubric checks.

Answers are generated through backends (`make_generator`), judged by another backend, and every
raw judge output is kept in `judgments.jsonl`. Unparseable verdicts are excluded and counted,
never scored (R18); pairwise runs both orders and counts disagreement as a tie (R17); mean answer
length is reported beside every score (R19). Prompts are package data files, editable.

Verdicts come from the judge's token probabilities where the judge backend reports them (the
local backend always; an OpenAI-compatible server when it answers `top_logprobs`): see
`judge_probs`. Otherwise the verdict is parsed from the text. Every judgment records which way
(`method`: probability | parsed | unparseable) and the summary counts them. With
`explanation=False` the judge is made to continue a verdict prefix (`Rating: [[`) directly.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tuneloop.backends import Generator, GenParams, Messages, make_generator, scored_generate
from tuneloop.data.jsonl import read_jsonl_objects
from tuneloop.errors import EvalError
from tuneloop.eval.judge_agreement import HumanVote, judge_human_agreement
from tuneloop.eval.judge_probs import PAIR_PREFIX, SINGLE_PREFIX, verdict_distribution
from tuneloop.eval.judge_selfpref import self_preference
from tuneloop.eval.judge_stats import (
    PairOutcome,
    combine_pair,
    parse_pair,
    parse_pass,
    parse_rating,
    summarize_pairs,
    summarize_scores,
)

PROMPT_DIR = "judge_prompts"
CHUNK = 8  # prompts per backend call: progress updates and bounded memory
TOP_LOGPROBS = 20  # alternatives asked per token (OpenAI's limit for chat completions)
NO_EXPLANATION = "\n\nDo not explain. Give only your verdict in the format above."
SCORING = ("auto", "parse")


# -- inputs --------------------------------------------------------------------------------

@dataclass
class Question:
    """One judge question: user turns (one or more), optional reference answers per turn."""

    id: str
    turns: list[str]
    reference: list[str] | None = None
    category: str | None = None
    where: str = ""


def _as_turns(value: Any, where: str, field_name: str) -> list[str]:
    turns = [value] if isinstance(value, str) else value
    if not isinstance(turns, list) or not turns or not all(
            isinstance(t, str) and t.strip() for t in turns):
        raise EvalError(f"field '{field_name}' must be a non-empty string or a list of "
                        f"non-empty strings, got {json.dumps(value)[:80]}", where=where,
                        fix=f"write '{field_name}': \"...\" or '{field_name}': [\"turn 1\", ...]")
    return list(turns)


def _reference_turns(value: Any, where: str, field_name: str) -> list[str] | None:
    """Reference answers per turn; an empty turn means no reference for that turn (FastChat's
    question.jsonl ships `"reference": ["...", ""]`), all empty means none (None)."""
    turns = [value] if isinstance(value, str) else value
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
        raise EvalError(f"field '{field_name}' must be a string or a list of strings (one per "
                        f"turn, \"\" where a turn has none), got {json.dumps(value)[:80]}",
                        where=where, fix=f"write '{field_name}': \"...\" or '{field_name}': "
                        "[\"turn 1\", \"\"]")
    return list(turns) if any(t.strip() for t in turns) else None


def has_reference(q: Question) -> bool:
    """Whether any turn of `q` has a reference answer."""
    return bool(q.reference) and any(r.strip() for r in q.reference)


def _read_jsonl(path: Path) -> list[tuple[str, dict]]:
    return read_jsonl_objects(path, error=EvalError, example='{"id": "q1", "question": "..."}')


def load_questions(path: str | Path) -> list[Question]:
    """Read questions.jsonl rows `{"id", "turns" | "question", "reference"?, "category"?}`."""
    path = Path(path)
    out: list[Question] = []
    seen: dict[str, str] = {}
    for where, row in _read_jsonl(path):
        qid = row.get("id", row.get("question_id"))
        if qid is None:
            raise EvalError("row has no 'id'", where=where, fix='add "id": "q1"')
        qid = str(qid)
        if qid in seen:
            raise EvalError(f"duplicate id {qid!r} (first at {seen[qid]})", where=where,
                            fix="give every question a unique id")
        seen[qid] = where
        if "turns" in row:
            turns = _as_turns(row["turns"], where, "turns")
        elif "question" in row:
            turns = _as_turns(row["question"], where, "question")
        else:
            raise EvalError("row has neither 'turns' nor 'question'", where=where,
                            fix='add "question": "..." or "turns": ["...", "..."]')
        ref = row.get("reference")
        reference = _reference_turns(ref, where, "reference") if ref is not None else None
        out.append(Question(qid, turns, reference, row.get("category"), where))
    if not out:
        raise EvalError("no questions in file", where=str(path))
    return out


def _fastchat_turns(row: dict, where: str) -> list[str] | None:
    """`choices[0].turns` of a FastChat answer row (model or reference answer), else None."""
    choices = row.get("choices")
    if choices is None:
        return None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise EvalError("'choices' must be a non-empty list of {\"turns\": [...]}", where=where,
                        fix="use FastChat's answer format: \"choices\": [{\"index\": 0, "
                        "\"turns\": [\"...\"]}]")
    return _as_turns(choices[0].get("turns"), where, "choices[0].turns")


def _row_id(row: dict, where: str) -> str:
    qid = row.get("question_id", row.get("id"))
    if qid is None:
        raise EvalError("row has no 'question_id' (or 'id')", where=where,
                        fix='add "question_id": 81')
    return str(qid)


def load_references(path: str | Path) -> dict[str, list[str]]:
    """Reference answers keyed by question id.

    Rows are tuneloop's `{"id", "reference" | "answer" | "turns"}` or FastChat's reference-answer
    rows as shipped (`{"question_id", "model_id", "choices": [{"turns": [...]}]}`).
    """
    refs: dict[str, list[str]] = {}
    for where, row in _read_jsonl(Path(path)):
        qid = _row_id(row, where)
        choices = row.get("choices")
        if choices is not None:
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                _fastchat_turns(row, where)  # raises the format error
            key, value = "choices[0].turns", choices[0].get("turns")
        else:
            key = next((k for k in ("reference", "answer", "turns") if k in row), None)
            if key is None:
                raise EvalError("row has no 'reference', 'answer', 'turns' or 'choices'",
                                where=where, fix='add "reference": "..."')
            value = row[key]
        turns = _reference_turns(value, where, key)
        if turns is not None:  # a row whose every turn is empty gives no reference
            refs[qid] = turns
    return refs


def load_answers(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """Existing model answers: {model: {question id: turns}}.

    Rows are FastChat's model-answer rows as shipped (`{"question_id", "model_id", "choices":
    [{"turns": [...]}]}`) or tuneloop's own `answers.jsonl` rows (`{"question_id", "model",
    "answers": [...]}`).
    """
    out: dict[str, dict[str, list[str]]] = {}
    seen: dict[tuple[str, str], str] = {}
    for where, row in _read_jsonl(Path(path)):
        qid = _row_id(row, where)
        model = row.get("model_id", row.get("model"))
        if not isinstance(model, str) or not model:
            raise EvalError("row has no 'model_id' (or 'model')", where=where,
                            fix='add "model_id": "my-model"')
        turns = _fastchat_turns(row, where)
        if turns is None:
            if "answers" not in row:
                raise EvalError("row has neither 'choices' (FastChat) nor 'answers' (tuneloop)",
                                where=where, fix='add "choices": [{"turns": ["..."]}]')
            turns = _as_turns(row["answers"], where, "answers")
        if (model, qid) in seen:
            raise EvalError(f"model {model!r} answers question {qid!r} twice (first at "
                            f"{seen[(model, qid)]})", where=where, fix="keep one answer row")
        seen[(model, qid)] = where
        out.setdefault(model, {})[qid] = turns
    if not out:
        raise EvalError("no answers in file", where=str(path))
    return out


def answers_for(questions: list[Question], given: dict[str, list[str]],
                model: str) -> list[list[str]]:
    """A model's answers in question order; every question must be answered, every turn."""
    out = []
    for q in questions:
        turns = given.get(q.id)
        if turns is None:
            raise EvalError(f"model {model!r} has no answer to question {q.id!r}",
                            where=q.where, fix="answer every question, or drop it from the "
                            "questions file")
        if len(turns) < len(q.turns):
            raise EvalError(f"model {model!r} answers {len(turns)} of question {q.id!r}'s "
                            f"{len(q.turns)} turns", where=q.where,
                            fix="give one answer per turn")
        out.append(list(turns[:len(q.turns)]))
    return out


@dataclass(frozen=True)
class JudgePrompt:
    """A judge prompt file: system text and a `str.format` template."""

    name: str
    system: str
    prompt: str

    def messages(self, **fields: str) -> Messages:
        """Chat messages for the judge with the template's fields filled."""
        try:
            text = self.prompt.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise EvalError(f"judge prompt template has a bad field: {exc}",
                            where=f"judge_prompts/{self.name}.yaml",
                            fix="use only the documented {fields}; write literal braces as "
                            "{{ }}") from None
        msgs = [{"role": "system", "content": self.system}] if self.system.strip() else []
        return msgs + [{"role": "user", "content": text}]


def load_prompt(name: str, prompt_dir: str | Path | None = None) -> JudgePrompt:
    """Load `judge_prompts/<name>.yaml` from package data (or from `prompt_dir` to override)."""
    import yaml

    if prompt_dir is not None:
        src = Path(prompt_dir) / f"{name}.yaml"
        text = src.read_text(encoding="utf-8") if src.exists() else None
    else:
        src = resources.files("tuneloop") / "resources" / PROMPT_DIR / f"{name}.yaml"
        text = src.read_text(encoding="utf-8") if src.is_file() else None
    if text is None:
        raise EvalError(f"judge prompt {name!r} not found", where=str(src),
                        fix="restore the file or point --prompts at a directory holding it")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
        raise EvalError("judge prompt file needs a 'prompt' string (and optional 'system')",
                        where=str(src))
    return JudgePrompt(name, str(data.get("system") or ""), data["prompt"])


# -- prompt building -----------------------------------------------------------------------

def _conversation(turns: list[str], answers: list[str], label: str = "") -> str:
    who = f"Assistant {label}" if label else "Assistant"
    if len(turns) == 1:
        return (f"[Question]\n{turns[0]}\n\n[The Start of {who}'s Answer]\n{answers[0]}\n"
                f"[The End of {who}'s Answer]")
    parts = [f"<|The Start of {who}'s Conversation with User|>"]
    for q, a in zip(turns, answers):
        parts += [f"### User:\n{q}", f"### {who}:\n{a}"]
    parts.append(f"<|The End of {who}'s Conversation with User|>")
    return "\n\n".join(parts)


def _reference_block(reference: list[str] | None) -> str:
    if not reference or not any(r.strip() for r in reference):
        return ""
    if len(reference) == 1:
        return f"[The Start of Reference Answer]\n{reference[0]}\n[The End of Reference Answer]"
    # a turn without a reference ("" in FastChat's file) is left out, the others keep their number
    body = "\n\n".join(f"### Reference answer to turn {i}:\n{r}"
                       for i, r in enumerate(reference, 1) if r.strip())
    return f"<|The Start of Reference Answers|>\n\n{body}\n\n<|The End of Reference Answers|>"


def prompt_name(mode: str, q: Question) -> str:
    """Which prompt file grades this question: single/pair, multi-turn, with reference."""
    name = "single" if mode == "single" else "pair"
    if len(q.turns) > 1:
        name += "_multi"
    if has_reference(q):
        name += "_ref"
    return name


def prompt_loader(mode: str, prompt_dir: str | Path | None = None
                  ) -> Callable[[Question], JudgePrompt]:
    """`q -> the JudgePrompt that grades q` in `mode`, each prompt file read once."""
    loaded: dict[str, JudgePrompt] = {}

    def prompt_for(q: Question) -> JudgePrompt:
        name = prompt_name(mode, q)
        if name not in loaded:
            loaded[name] = load_prompt(name, prompt_dir)
        return loaded[name]

    return prompt_for


def single_messages(q: Question, answers: list[str], prompt: JudgePrompt) -> Messages:
    """Judge messages grading one model's answers to `q`."""
    return prompt.messages(conversation=_conversation(q.turns, answers),
                           reference=_reference_block(q.reference))


def pair_messages(q: Question, first: list[str], second: list[str],
                  prompt: JudgePrompt) -> Messages:
    """Judge messages comparing `first` (shown as A) and `second` (shown as B)."""
    conv = _conversation(q.turns, first, "A") + "\n\n" + _conversation(q.turns, second, "B")
    return prompt.messages(conversation=conv, reference=_reference_block(q.reference))


# -- running -------------------------------------------------------------------------------

def _chunked_generate(gen: Generator, prompts: list[Messages], params: GenParams,
                      progress: Any = None, task: Any = None) -> list[str]:
    out: list[str] = []
    for start in range(0, len(prompts), CHUNK):
        chunk = prompts[start:start + CHUNK]
        out.extend(gen.generate(chunk, params))
        if progress is not None:
            progress.advance(task, len(chunk))
    return out


def _chunked_scored(gen: Generator, prompts: list[Messages], params: GenParams, top: int,
                    progress: Any = None, task: Any = None) -> list[Any]:
    out: list[Any] = []
    for start in range(0, len(prompts), CHUNK):
        chunk = prompts[start:start + CHUNK]
        out.extend(scored_generate(gen, chunk, params, top))
        if progress is not None:
            progress.advance(task, len(chunk))
    return out


def forced_verdict(messages: Messages, mode: str) -> tuple[Messages, str]:
    """The judge messages asking for the verdict alone, ending in the verdict prefix to continue."""
    prefix = SINGLE_PREFIX if mode == "single" else PAIR_PREFIX
    msgs = [dict(m) for m in messages]
    msgs[-1]["content"] += NO_EXPLANATION
    return msgs + [{"role": "assistant", "content": prefix}], prefix


def judge_verdicts(judge_gen: Generator, prompts: list[Messages], mode: str, params: GenParams,
                   *, scoring: str = "auto", explanation: bool = True,
                   top_logprobs: int = TOP_LOGPROBS, progress: Any = None,
                   task: Any = None) -> list[dict[str, Any]]:
    """Judge each prompt; per prompt {raw, verdict, method, probs?, p_mass?}.

    single: verdict = expected rating (probability) or the parsed `[[N]]`; pairwise: verdict =
    the most likely / parsed letter A, B or C, with `probs` P(A), P(B), P(C) where known.
    """
    if scoring not in SCORING:
        raise EvalError(f"unknown scoring {scoring!r}", fix="use --scoring auto or parse")
    prefix = ""
    # Only a backend that continues a final assistant message can be given a verdict prefix
    # (the local one); a server starts a new reply, so its verdict is searched in its text.
    continues = bool(getattr(judge_gen, "continues_prefix", False))
    if not explanation:
        forced = [forced_verdict(m, mode) for m in prompts]
        if continues:
            prompts = [m for m, _ in forced]
            prefix = forced[0][1] if forced else ""
        else:
            prompts = [m[:-1] for m, _ in forced]  # the instruction, without the prefix
        params = GenParams(min(params.max_tokens, 8), params.temperature, params.top_p,
                           params.seed, params.stop)
    if scoring == "parse":
        scored = [(text, None) for text in _chunked_generate(judge_gen, prompts, params,
                                                             progress, task)]
    else:
        scored = [(s.text, s.tokens) for s in _chunked_scored(
            judge_gen, prompts, params, top_logprobs, progress, task)]
    out: list[dict[str, Any]] = []
    retry: list[int] = []  # explained, but no verdict written: ask for it after the explanation
    for i, (text, tokens) in enumerate(scored):
        raw = prefix + text
        dist = verdict_distribution(tokens, mode, prefix) if tokens else None
        if dist is not None:
            out.append(_prob_verdict(raw, dist, mode))
            continue
        parsed: Any = parse_rating(raw) if mode == "single" else parse_pair(raw)
        out.append({"raw": raw, "verdict": parsed,
                    "method": "parsed" if parsed is not None else "unparseable"})
        if parsed is None and tokens is not None and explanation and continues:
            retry.append(i)
    if retry:
        # The judge gives probabilities but wrote no verdict: continue its own explanation with
        # the verdict prefix, and read the verdict distribution at the next token.
        verdict_prefix = SINGLE_PREFIX if mode == "single" else PAIR_PREFIX
        tails = [scored[i][0].rstrip() + "\n\n" + verdict_prefix for i in retry]
        again = scored_generate(judge_gen, [
            [*prompts[i], {"role": "assistant", "content": tail}]
            for i, tail in zip(retry, tails)], GenParams(8, params.temperature, params.top_p,
                                                         params.seed), top_logprobs)
        for i, tail, res in zip(retry, tails, again):
            dist = verdict_distribution(res.tokens, mode, tail) if res.tokens else None
            if dist is not None:
                out[i] = {**_prob_verdict(tail + res.text, dist, mode),
                          "verdict_prefix_after_explanation": True}
    return out


def _prob_verdict(raw: str, dist: Any, mode: str) -> dict[str, Any]:
    verdict: Any = round(dist.expected_rating(), 6) if mode == "single" else dist.letter()
    return {"raw": raw, "verdict": verdict, "method": "probability",
            "probs": {k: round(v, 6) for k, v in dist.probs.items()},
            "p_mass": round(dist.mass, 6)}


def generate_answers(gen: Generator, questions: list[Question], params: GenParams,
                     progress: Any = None, task: Any = None) -> list[list[str]]:
    """Answer every question turn by turn (later turns see the model's earlier answers)."""
    answers: list[list[str]] = [[] for _ in questions]
    for k in range(max(len(q.turns) for q in questions)):
        todo = [i for i, q in enumerate(questions) if len(q.turns) > k]
        prompts = []
        for i in todo:
            msgs: Messages = []
            for turn, ans in zip(questions[i].turns[:k], answers[i]):
                msgs += [{"role": "user", "content": turn}, {"role": "assistant", "content": ans}]
            prompts.append(msgs + [{"role": "user", "content": questions[i].turns[k]}])
        outs = _chunked_generate(gen, prompts, params, progress, task)
        for i, text in zip(todo, outs):
            answers[i].append(text)
    return answers


def collect_answers(questions: list[Question], models: Sequence[str],
                    given: dict[str, list[list[str]]] | None = None,
                    params: GenParams | None = None, *,
                    generators: dict[str, Generator] | None = None,
                    progress: Any = None) -> dict[str, list[list[str]]]:
    """Each model's answers in question order: `given` ones as they are, the rest generated."""
    given, generators = given or {}, generators or {}
    params = params or GenParams(max_tokens=256)
    answers: dict[str, list[list[str]]] = {}
    for spec in models:
        if spec in given:
            answers[spec] = given[spec]
            continue
        task = None
        if progress is not None:
            task = progress.add_task(f"answers: {model_label(spec)}",
                                     total=sum(len(q.turns) for q in questions))
        gen = generators.get(spec) or make_generator(spec)
        answers[spec] = generate_answers(gen, questions, params, progress, task)
    return answers


def _words(answers: list[str]) -> int:
    return sum(len(a.split()) for a in answers)


def model_label(spec: str) -> str:
    """A short display name: the model after '#' for URLs, the last path part for paths."""
    if spec.startswith("openai:") and "#" in spec:
        return spec.rsplit("#", 1)[1]
    return Path(spec.rstrip("/")).name or spec


@dataclass
class JudgeRun:
    """Everything a judge run produced: summary dict, judgments and where they were written."""

    summary: dict[str, Any]
    judgments: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path | None = None


def run_judge(
    questions: list[Question],
    models: list[str],
    judge: str | Generator,
    *,
    mode: str = "single",
    out_dir: str | Path | None = None,
    answer_params: GenParams | None = None,
    judge_params: GenParams | None = None,
    prompt_dir: str | Path | None = None,
    generators: dict[str, Generator] | None = None,
    answers: dict[str, list[list[str]]] | None = None,
    seed: int = 0,
    show_progress: bool = True,
    scoring: str = "auto",
    explanation: bool = True,
    top_logprobs: int = TOP_LOGPROBS,
    human_votes: Sequence[HumanVote] | None = None,
    judge_check: dict[str, Any] | None = None,
) -> JudgeRun:
    """Generate answers for each model, judge them, aggregate; write outputs if `out_dir`.

    `answers` holds existing answers per model (question order): those are judged, not
    generated. `scoring="auto"` reads verdicts from the judge's token probabilities where it reports them
    (else parses the text); "parse" always parses. `explanation=False` forces the verdict prefix.
    `human_votes` (pairwise only): people's votes on the same pairs; the summary then carries the
    judge's agreement with them (`human_agreement`, see `judge_agreement`). `judge_check`: the
    discrimination check's summary (`judge_check.judge_discrimination`), carried in the summary.
    """
    from rich.progress import Progress

    if mode not in ("single", "pairwise"):
        raise EvalError(f"unknown judge mode {mode!r}", fix="use --mode single or pairwise")
    if not models:
        raise EvalError("no model to judge", fix="pass --model at least once")
    if mode == "pairwise" and len(models) < 2:
        raise EvalError("pairwise judging needs two or more --model", fix="add a second --model "
                        "or use --mode single")
    if len(set(models)) != len(models):
        raise EvalError("the same --model is given twice", fix="pass each model once")
    if human_votes is not None and mode != "pairwise":
        raise EvalError("agreement with human votes needs pairwise verdicts",
                        fix="add --mode pairwise (or drop --human-votes)")
    labels = [model_label(m) for m in models]
    if len(set(labels)) != len(labels):
        labels = list(models)
    answer_params = answer_params or GenParams(max_tokens=256)
    judge_params = judge_params or GenParams(max_tokens=512)
    judge_gen = make_generator(judge) if isinstance(judge, str) else judge
    generators = generators or {}

    with Progress(disable=not show_progress, transient=True) as progress:
        answers = collect_answers(questions, models, answers, answer_params,
                                  generators=generators, progress=progress)

        prompt_for = prompt_loader(mode, prompt_dir)

        jobs: list[tuple[dict[str, Any], Messages]] = []
        if mode == "single":
            for spec, label in zip(models, labels):
                for i, q in enumerate(questions):
                    meta = {"mode": "single", "question_id": q.id, "model": label,
                            "prompt": prompt_name(mode, q)}
                    jobs.append((meta, single_messages(q, answers[spec][i], prompt_for(q))))
        else:
            for (sa, la), (sb, lb) in itertools.combinations(zip(models, labels), 2):
                for i, q in enumerate(questions):
                    p = prompt_for(q)
                    base = {"mode": "pairwise", "question_id": q.id, "model_a": la,
                            "model_b": lb, "prompt": prompt_name(mode, q)}
                    jobs.append(({**base, "order": "AB"},
                                 pair_messages(q, answers[sa][i], answers[sb][i], p)))
                    jobs.append(({**base, "order": "BA"},
                                 pair_messages(q, answers[sb][i], answers[sa][i], p)))
        task = progress.add_task("judging", total=len(jobs))
        verdicts = judge_verdicts(judge_gen, [m for _, m in jobs], mode, judge_params,
                                  scoring=scoring, explanation=explanation,
                                  top_logprobs=top_logprobs, progress=progress, task=task)

    judgments = []
    for (meta, _), v in zip(jobs, verdicts):
        judgments.append({**meta, "judge": judge_gen.name, **v,
                          "parsed": v["verdict"] is not None})

    words = {label: [_words(a) for a in answers[spec]] for spec, label in zip(models, labels)}
    mean_words = {k: (sum(v) / len(v)) if v else 0.0 for k, v in words.items()}
    categories: dict[str, set[str]] = {}
    for q in questions:
        if q.category:
            categories.setdefault(str(q.category), set()).add(q.id)
    summary: dict[str, Any] = {"mode": mode, "judge": judge_gen.name,
                               "n_questions": len(questions), "models": dict(zip(labels, models)),
                               "unparseable_outputs": sum(not j["parsed"] for j in judgments),
                               "judge_outputs": len(judgments),
                               "verdicts_by_method": {
                                   m: sum(j["method"] == m for j in judgments)
                                   for m in ("probability", "parsed", "unparseable")},
                               "explanation": explanation, "scoring": scoring}
    if judge_check is not None:
        summary["judge_check"] = judge_check
    judge_spec = judge if isinstance(judge, str) else judge_gen.name
    involved = {label: sum(label in (j.get("model"), j.get("model_a"), j.get("model_b"))
                           for j in judgments) for label in labels}
    summary["self_preference"] = self_preference(judge_spec, dict(zip(labels, models)), involved,
                                                 len(judgments))
    if mode == "single":
        summary["results"] = [
            {"model": label, **summarize_scores(
                [j["verdict"] for j in judgments if j["model"] == label], seed=seed),
             "mean_answer_words": mean_words[label],
             **_rating_spread([j for j in judgments if j["model"] == label]),
             "by_category": {
                 cat: summarize_scores([j["verdict"] for j in judgments if j["model"] == label
                                        and j["question_id"] in ids], seed=seed)["mean"]
                 for cat, ids in categories.items()}}
            for label in labels]
    else:
        results = []
        for la, lb in itertools.combinations(labels, 2):
            outcomes: dict[str, PairOutcome] = {}
            for q in questions:
                mine = {j["order"]: j["verdict"] for j in judgments
                        if j["question_id"] == q.id and j["model_a"] == la and j["model_b"] == lb}
                outcomes[q.id] = combine_pair(mine.get("AB"), mine.get("BA"))
            results.append({
                "model_a": la, "model_b": lb, **summarize_pairs(list(outcomes.values()), seed=seed),
                **_pair_probs([j for j in judgments
                               if j["model_a"] == la and j["model_b"] == lb]),
                "mean_answer_words_a": mean_words[la], "mean_answer_words_b": mean_words[lb],
                "by_category": {
                    cat: summarize_pairs([outcomes[i] for i in ids], seed=seed)["win_rate"]
                    for cat, ids in categories.items()}})
        summary["results"] = results
        if human_votes is not None:
            summary["human_agreement"] = judge_human_agreement(
                questions, judgments, {label: answers[spec] for spec, label in zip(models, labels)},
                human_votes, seed=seed)

    run = JudgeRun(summary, judgments)
    if out_dir is not None:
        run.out_dir = write_outputs(Path(out_dir), run, questions, answers, dict(zip(models,
                                                                                   labels)))
    return run


def _rating_spread(judgments: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean rating distribution (probability verdicts) and the spread of the ratings."""
    import statistics

    scores = [j["verdict"] for j in judgments if j["verdict"] is not None]
    probs = [j["probs"] for j in judgments if j.get("probs")]
    out: dict[str, Any] = {"score_sd": statistics.pstdev(scores) if len(scores) > 1 else None,
                           "score_range": [min(scores), max(scores)] if scores else None,
                           "mean_distribution": None}
    if probs:
        out["mean_distribution"] = {k: sum(p[k] for p in probs) / len(probs) for k in probs[0]}
    return out


def _pair_probs(judgments: list[dict[str, Any]]) -> dict[str, Any]:
    """P(model A better), P(model B better), P(tie) averaged over both orders (probability only).

    In order BA the judge saw model B as "A", so its P(A) is model B's.
    """
    pa = pb = pt = 0.0
    n = 0
    for j in judgments:
        p = j.get("probs")
        if not p:
            continue
        first, second = (p["A"], p["B"]) if j["order"] == "AB" else (p["B"], p["A"])
        pa, pb, pt, n = pa + first, pb + second, pt + p["C"], n + 1
    if not n:
        return {"p_a_better": None, "p_b_better": None, "p_tie": None}
    return {"p_a_better": pa / n, "p_b_better": pb / n, "p_tie": pt / n}


def write_outputs(out: Path, run: JudgeRun, questions: list[Question],
                  answers: dict[str, list[list[str]]], labels: dict[str, str]) -> Path:
    """Write answers.jsonl, judgments.jsonl (every raw judge output) and summary.json."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"question_id": q.id, "model": labels[spec], "answers": ans}
            for spec, per_q in answers.items() for q, ans in zip(questions, per_q)]
    (out / "answers.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (out / "judgments.jsonl").write_text(
        "".join(json.dumps(j, ensure_ascii=False) + "\n" for j in run.judgments),
        encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(run.summary, indent=2) + "\n",
                                      encoding="utf-8")
    return out


def summary_table(summary: dict[str, Any]) -> Any:
    """A rich Table of a judge summary (score or win rate with 95% CI, flips, lengths)."""
    from rich.table import Table

    def ci(v: Any, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
        return "-" if not v else f"[{fmt.format(v[0] * scale)}, {fmt.format(v[1] * scale)}]"

    if summary["mode"] == "single":
        t = Table(title=f"judge: {summary['judge']} (single, 1-10)", caption=_methods(summary))
        for col in ("model", "mean score", "95% CI", "sd", "scored", "unparseable",
                    "mean words"):
            t.add_column(col)
        for r in summary["results"]:
            mean = "-" if r["mean"] is None else f"{r['mean']:.2f}"
            sd = "-" if r.get("score_sd") is None else f"{r['score_sd']:.2f}"
            t.add_row(r["model"], mean, ci(r["ci95"]), sd, str(r["n"]), str(r["unparseable"]),
                      f"{r['mean_answer_words']:.1f}")
        return t
    probs = [f"{r['model_a']} vs {r['model_b']}: P(A better) {r['p_a_better']:.2f}, "
             f"P(B better) {r['p_b_better']:.2f}, P(tie) {r['p_tie']:.2f}"
             for r in summary["results"] if r.get("p_a_better") is not None]
    t = Table(title=f"judge: {summary['judge']} (pairwise, both orders)",
              caption="\n".join([_methods(summary), *probs]))
    for col in ("model A", "model B", "A win rate", "95% CI", "W/L/T", "flip rate", "excluded",
                "words A", "words B"):
        t.add_column(col)
    for r in summary["results"]:
        rate = "-" if r["win_rate"] is None else f"{r['win_rate']:.1%}"
        flip = "-" if r["flip_rate"] is None else f"{r['flip_rate']:.1%}"
        t.add_row(r["model_a"], r["model_b"], rate, ci(r["ci95"], 100, "{:.0f}%"),
                  f"{r['wins']}/{r['losses']}/{r['ties']}", flip, str(r["excluded"]),
                  f"{r['mean_answer_words_a']:.1f}", f"{r['mean_answer_words_b']:.1f}")
    return t


def summary_warnings(summary: dict[str, Any]) -> list[str]:
    """Warnings to show under the summary table (an untrusted judge, self-preference)."""
    check = summary.get("judge_check")
    untrusted = [check["message"]] if check and not check.get("trusted") else []
    return untrusted + [w["warning"] for w in summary.get("self_preference") or []]


def _methods(summary: dict[str, Any]) -> str:
    """How the verdicts were obtained, e.g. 'verdicts: 8 from probabilities, 2 parsed, 0 ...'."""
    m = summary.get("verdicts_by_method") or {}
    return (f"verdicts: {m.get('probability', 0)} from token probabilities, "
            f"{m.get('parsed', 0)} parsed from text, {m.get('unparseable', 0)} unparseable")


# -- rubric checks for task suites ---------------------------------------------------------

@dataclass(frozen=True)
class JudgeVerdict:
    """A rubric judgment: score 1-10 and pass/fail, None where the judge output was unparseable."""

    score: float | None
    passed: bool | None
    raw: str


def judge_rubric(judge: Generator, question: str, answer: str, rubric: str,
                 reference: str | None = None, *, pass_threshold: float = 7.0,
                 params: GenParams | None = None, prompt_dir: str | Path | None = None,
                 prompt: JudgePrompt | None = None) -> JudgeVerdict:
    """Grade one answer against a rubric; an explicit [[PASS]]/[[FAIL]] wins over the score.

    `prompt` is the loaded rubric prompt (read from `prompt_dir` or package data if not given).
    """
    prompt = prompt or load_prompt("rubric", prompt_dir)
    ref = f"\n[Reference Answer]\n{reference}\n" if reference else ""
    msgs = prompt.messages(rubric=rubric, question=question, answer=answer, reference=ref)
    [raw] = judge.generate([msgs], params or GenParams(max_tokens=512))
    score = parse_rating(raw)
    passed = parse_pass(raw)
    if passed is None and score is not None:
        passed = score >= pass_threshold
    return JudgeVerdict(score, passed, raw)


def rubric_judge_fn(judge: str | Generator, **kw: Any):
    """Adapter for suite `judge` checks: (rubric, prompt, output, reference) -> (passed, why).

    An unparseable verdict is not a pass and says so in the explanation (R18: never scored).
    """
    gen = make_generator(judge) if isinstance(judge, str) else judge
    kw.setdefault("prompt", load_prompt("rubric", kw.get("prompt_dir")))  # read once, not per case

    def fn(rubric: str, prompt: str, output: str, reference: str | None) -> tuple[bool, str]:
        v = judge_rubric(gen, prompt, output, rubric, reference, **kw)
        if v.passed is None:
            return False, f"unparseable judge verdict (not scored): {v.raw[:200]!r}"
        score = "" if v.score is None else f" (rating {v.score:g}/10)"
        return v.passed, f"judge: {'PASS' if v.passed else 'FAIL'}{score}"

    return fn
