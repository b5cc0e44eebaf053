"""Multiple-choice loglikelihood scoring with lm-evaluation-harness semantics (R20).

For each item (question, choices, answer index) and each choice:
context = PROMPT_FORMAT.format(question=...), continuation = " " + choice (lm-eval's default
target delimiter). Pairs are encoded as lm-eval's HFLM does (`_encode_pair`): trailing whitespace
of the context moves to the continuation, the whole string is encoded, and the continuation is
what follows the context's own encoding. The loglikelihood is the sum of log p of the continuation
tokens. acc = argmax ll is gold; acc_norm = argmax ll / len(choice) in characters (the choice text
without the delimiter, as lm-eval does); ties go to the first choice (np.argmax).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.data.jsonl import read_jsonl_objects
from tuneloop.errors import EvalError
from tuneloop.eval.suite_run import progress_bar
from tuneloop.models import resolve_model_ref

PROMPT_FORMAT = "Question: {question}\nAnswer:"
TARGET_DELIMITER = " "
# transformers' "no limit" sentinel for tokenizer.model_max_length (lm-eval checks the same)
_TOKENIZER_INFINITY = 1000000000000000019884624838656


@dataclass
class MCItem:
    """One multiple-choice item and where it came from."""

    question: str
    choices: list[str]
    answer: int
    where: str = ""


@dataclass
class MCResult:
    """acc / acc_norm over items, with per-item loglikelihoods and predictions."""

    acc: float
    acc_norm: float
    n: int
    items: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Scores without the per-item detail."""
        return {"acc": self.acc, "acc_norm": self.acc_norm, "n": self.n}


def load_mc_items(path: str | Path) -> list[MCItem]:
    """Read a JSONL file of {question, choices, answer}; EvalError naming file:line if malformed."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"file not found: {path}",
                        fix="pass a .jsonl file of multiple-choice items")
    example = '{"question": "...", "choices": ["...", "..."], "answer": 0}'
    items = [_item(row, where)
             for where, row in read_jsonl_objects(path, error=EvalError, example=example)]
    if not items:
        raise EvalError("no items in the file", where=str(path),
                        fix='add lines like {"question": ..., "choices": [...], "answer": 0}')
    return items


def _item(row: Any, where: str) -> MCItem:
    fix = 'each line needs {"question": str, "choices": [str, ...], "answer": int index}'
    if not isinstance(row, dict):
        raise EvalError(f"expected a JSON object, got {type(row).__name__}", where=where, fix=fix)
    unknown = sorted(set(row) - {"question", "choices", "answer", "id"})
    if unknown:
        raise EvalError(f"unknown field(s) {', '.join(unknown)}", where=where, fix=fix)
    question, choices, answer = row.get("question"), row.get("choices"), row.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise EvalError(f"field 'question' must be a non-empty string, got {question!r}",
                        where=where, fix=fix)
    if (not isinstance(choices, list) or len(choices) < 2
            or not all(isinstance(c, str) and c for c in choices)):
        raise EvalError(f"field 'choices' must list at least 2 non-empty strings, got {choices!r}",
                        where=where, fix=fix)
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise EvalError(f"field 'answer' must be an index 0..{len(choices) - 1}, got {answer!r}",
                        where=where, fix=fix)
    return MCItem(question, list(choices), answer, where)


def _encode(tokenizer: Any, text: str) -> list[int]:
    # HFLM.tok_encode with add_bos_token unset: the tokenizer's own default special tokens
    return list(tokenizer.encode(text))


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's `_encode_pair` for causal models (whole string encoded, then split)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = _encode(tokenizer, context + continuation)
    context_enc = _encode(tokenizer, context)
    return context_enc, whole[len(context_enc):]


def model_max_length(model: Any, tokenizer: Any) -> int:
    """The context length lm-eval's HFLM assumes for this model (config, tokenizer, else 2048)."""
    config = getattr(model, "config", None)
    for cfg in (getattr(config, "text_config", None), config):  # lm-eval's resolve_max_length
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(cfg, attr, None)
            if isinstance(value, int):
                return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and limit != _TOKENIZER_INFINITY:
        return limit
    return 2048


def loglikelihoods(
    model: Any, tokenizer: Any, requests: list[tuple[str, str]], *, batch_size: int = 8,
    progress: bool = True,
) -> list[tuple[float, bool]]:
    """(sum log p(continuation | context), is_greedy) per (context, continuation) request."""
    import torch
    import torch.nn.functional as F

    max_len = model_max_length(model, tokenizer)
    encoded = []
    for context, continuation in requests:
        if not context:
            raise EvalError("empty context", fix="every item needs a non-empty question")
        ctx, cont = encode_pair(tokenizer, context, continuation)
        if not cont:
            raise EvalError(f"continuation {continuation!r} encodes to no tokens")
        # lm-eval feeds (context + continuation)[-(max_length + 1):][:-1]
        encoded.append(((ctx + cont)[-(max_len + 1):][:-1], cont))
    device = next(model.parameters()).device
    # longest first, like lm-eval's reordering, so padding per batch stays small
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]) - len(encoded[i][1]))
    results: list[tuple[float, bool] | None] = [None] * len(encoded)
    with torch.no_grad(), progress_bar(progress) as bar:
        task = bar.add_task("loglikelihood", total=len(order))
        for start in range(0, len(order), batch_size):
            idxs = order[start:start + batch_size]
            width = max(len(encoded[i][0]) for i in idxs)
            # right padding and no attention mask, as HFLM does: causal attention means padding
            # after a row's tokens never changes the logits at its positions
            batch = torch.zeros((len(idxs), width), dtype=torch.long)
            for row, i in enumerate(idxs):
                inp = encoded[i][0]
                batch[row, : len(inp)] = torch.tensor(inp, dtype=torch.long)
            logits = model(batch.to(device)).logits
            logprobs = F.log_softmax(logits.float(), dim=-1)
            for row, i in enumerate(idxs):
                inp, cont = encoded[i]
                n_inp, n_cont = len(inp), len(cont)
                lp = logprobs[row, n_inp - n_cont:n_inp]  # positions that predict cont tokens
                target = torch.tensor(cont, dtype=torch.long, device=lp.device)
                greedy = bool((lp.argmax(dim=-1) == target).all())
                results[i] = (float(lp.gather(1, target[:, None]).sum()), greedy)
            bar.advance(task, len(idxs))
    return results  # type: ignore[return-value]


def _argmax(values: list[float]) -> int:
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def score_mc(
    model: Any, tokenizer: Any, items: list[MCItem], *, prompt_format: str = PROMPT_FORMAT,
    batch_size: int = 8, progress: bool = True,
) -> MCResult:
    """Score items by loglikelihood: acc and acc_norm exactly as lm-evaluation-harness."""
    requests, spans = [], []
    for item in items:
        context = prompt_format.format(question=item.question)
        spans.append((len(requests), len(item.choices)))
        requests.extend((context, TARGET_DELIMITER + c) for c in item.choices)
    lls = loglikelihoods(model, tokenizer, requests, batch_size=batch_size, progress=progress)
    rows, acc, acc_norm = [], 0, 0
    for item, (start, n) in zip(items, spans, strict=True):
        ll = [lls[start + j][0] for j in range(n)]
        pred = _argmax(ll)
        pred_norm = _argmax([v / float(len(c)) for v, c in zip(ll, item.choices, strict=True)])
        acc += pred == item.answer
        acc_norm += pred_norm == item.answer
        rows.append({"where": item.where, "question": item.question, "choices": item.choices,
                     "answer": item.answer, "loglikelihoods": ll, "pred": pred,
                     "pred_norm": pred_norm})
    return MCResult(acc=acc / len(items), acc_norm=acc_norm / len(items), n=len(items),
                    items=rows)


def lm_eval_model_args(model_ref: str | Path) -> str:
    """`model_args` for lm_eval's "hf" model: resolved weights dir, plus peft= for adapters."""
    resolved = resolve_model_ref(str(model_ref))
    args = f"pretrained={resolved.weights},dtype=float32"
    if resolved.tokenizer_path and resolved.tokenizer_path != resolved.weights:
        args += f",tokenizer={resolved.tokenizer_path}"
    if resolved.adapter is not None:
        args += f",peft={resolved.adapter}"
    return args


def run_lm_eval(model_ref: str | Path, tasks: str, *, device: str = "cpu",
                batch_size: int = 8, include_path: str | None = None,
                **kwargs: Any) -> dict[str, Any]:
    """Pass the model to lm-evaluation-harness (`simple_evaluate`) for the named tasks."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ModuleNotFoundError:
        raise EvalError("lm-evaluation-harness is not installed",
                        fix="pip install lm-eval (or tuneloop[dev])") from None
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise EvalError(f"no task names in {tasks!r}", fix="pass --lm-eval hellaswag,arc_easy")
    return lm_eval.simple_evaluate(
        model="hf", model_args=lm_eval_model_args(model_ref), tasks=names, device=device,
        batch_size=batch_size, task_manager=TaskManager(include_path=include_path), **kwargs,
    )
