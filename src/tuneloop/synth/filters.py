"""Parsing model answers and the Self-Instruct filters, each returning a countable reason."""

from __future__ import annotations

import re
import string

# Tasks a text-only model cannot do (whole words, case-insensitive).
BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map",
             "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram")
_BLACKLIST_RE = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in BLACKLIST) + r")\b",
                           re.IGNORECASE)
MIN_WORDS, MAX_WORDS = 4, 150
_ITEM_RE = re.compile(r"(?:^|\n)[ \t]*\d+[ \t]*[.)][ \t]*")
_LEADING_NUM_RE = re.compile(r"^(?:\d+[ \t]*[.)][ \t]*)+")
# A field that only echoes the prompt's template ("Input: ...") is not an instance.
_PLACEHOLDER_RE = re.compile(r"^(?:\.{2,}|…|<[^<>]{0,20}>|\[[^\[\]]{0,20}\])$")
_NOINPUT = {"<noinput>", "<no input>", "none", "n/a", "<none>"}


def looks_cut_off(text: str, max_tokens: int) -> bool:
    """Whether an answer probably stopped at the token limit (so its last item is incomplete).

    Backends return text only, without the server's finish_reason, so this estimates: an answer
    of at least 90 % of `max_tokens` (at ~4 characters a token) that does not end at a line
    break or sentence end is treated as cut.
    """
    stripped = text.rstrip(" \t")
    if not stripped or stripped.endswith(("\n", ".", "?", "!", '"')):
        return False
    return len(text) / 4 >= 0.9 * max_tokens


def parse_numbered(answer: str, first: int) -> list[str]:
    """Items of a numbered list the model continued from item `first` (which the prompt opened)."""
    text = answer if re.match(r"\s*\d+\s*[.)]", answer) else f"{first}. {answer.lstrip()}"
    items = []
    for part in _ITEM_RE.split(text):
        # Small models number twice ("2. 2. Task"): strip every leading enumeration.
        item = _LEADING_NUM_RE.sub("", re.sub(r"\s+", " ", part).strip())
        if item:
            items.append(item)
    return items


def instruction_reason(text: str) -> str | None:
    """Why a candidate instruction is dropped (None = passes); the first failing rule wins."""
    words = len(text.split())
    if words < MIN_WORDS:
        return "too_short"
    if words > MAX_WORDS:
        return "too_long"
    if _BLACKLIST_RE.search(text):
        return "blacklisted_word"
    if text.lower().startswith("write a program"):
        return "write_a_program"
    if text[0] in string.punctuation:
        return "starts_with_punctuation"
    if not text[0].isascii():
        return "starts_non_ascii"
    return None


def parse_instances(answer: str, output_first: bool) -> list[tuple[str, str]]:
    """(input, output) pairs from an instances answer: blocks of `Input:`/`Output:` fields
    (`Class label:`/`Input:` when output-first); `Example N` header lines are ignored."""
    first, second = ("Class label", "Input") if output_first else ("Input", "Output")
    text = re.sub(r"(?im)^[ \t]*(?:#+|\*+)?[ \t]*example[ \t]*\d+[ \t]*:?[ \t]*\**[ \t]*$", "",
                  answer)
    starts = [m.start() for m in re.finditer(rf"(?im)^[ \t]*{first}[ \t]*:", text)]
    pairs = []
    for s, e in zip(starts, starts[1:] + [len(text)]):
        block = re.split(r"(?im)^[ \t]*task[ \t]*:", text[s:e])[0]  # the prompt echoed back
        head = re.match(rf"(?is)[ \t]*{first}[ \t]*:(.*?)(?:^[ \t]*{second}[ \t]*:(.*))?\Z",
                        block, re.MULTILINE)
        if head is None:
            continue
        a = (head.group(1) or "").strip()
        b = (head.group(2) or "").strip()
        if output_first:
            pairs.append(("" if b.lower() in _NOINPUT else b, a))
        else:
            pairs.append(("" if a.lower() in _NOINPUT else a, b))
    return pairs


def filter_instances(pairs: list[tuple[str, str]], limit: int
                     ) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]], str | None]:
    """(kept pairs, dropped instances as (reason, input, output), task-level reason or None).

    Invalid instances are dropped (empty output, a template placeholder such as "..." as input
    or output, input equal to output, exact repeats, beyond `limit`); a task whose same input
    gets different outputs is dropped whole ("conflicting_outputs"). Every dropped instance is
    returned with its reason, so the caller can keep it in rejects.jsonl.
    """
    dropped: list[tuple[str, str, str]] = []
    kept: list[tuple[str, str]] = []
    outputs_by_input: dict[str, set[str]] = {}
    for inp, out in pairs:
        if not out.strip():
            dropped.append(("empty_output", inp, out))
            continue
        if _PLACEHOLDER_RE.match(out.strip()) or _PLACEHOLDER_RE.match(inp.strip()):
            dropped.append(("placeholder", inp, out))
            continue
        if inp.strip() and inp.strip() == out.strip():
            dropped.append(("input_equals_output", inp, out))
            continue
        if (inp, out) in kept:
            dropped.append(("repeated_instance", inp, out))
            continue
        outputs_by_input.setdefault(inp.strip(), set()).add(out.strip())
        kept.append((inp, out))
    if any(len(outs) > 1 for outs in outputs_by_input.values()):
        return [], dropped, "conflicting_outputs"
    if not kept:
        return [], dropped, "no_valid_instance"
    if len(kept) > limit:
        dropped.extend(("over_instance_limit", inp, out) for inp, out in kept[limit:])
        kept = kept[:limit]
    return kept, dropped, None


def is_yes(answer: str) -> bool:
    """A Yes/No answer (classification question): yes when it starts with 'yes'."""
    return answer.strip().lstrip("*#> ").lower().startswith("yes")


_VERDICT_RE = re.compile(r"\[\[\s*(YES|NO)\s*\]\]", re.IGNORECASE)


def parse_verdict(answer: str) -> tuple[bool | None, str]:
    """([[YES]] → True, [[NO]] → False, none → None; the judge's text without the verdict)."""
    found = list(_VERDICT_RE.finditer(answer))
    if not found:
        return None, answer.strip()[:500]
    last = found[-1]
    reason = (answer[: last.start()] + " " + answer[last.end():]).strip()  # verdict first or last
    return last.group(1).upper() == "YES", reason[:500]
