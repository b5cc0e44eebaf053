"""`--generator extractive`: question/answer rows taken from documents by rule, with no model.

Offline, a 135M model cannot write usable questions or judge them (docs/iterate.md). This
backend answers tuneloop's own document prompts (synth docs and iterate: `docs_qa`,
`judge_faithful`, `judge_standalone`) by extraction instead:

- writing: the chunk's statements (bullet lines and prose sentences) are ranked — a statement
  holding a value the prompt asks for ("The answer states: …", what iterate passes for a failed
  check) first, then by overlap with the focus words. With a value, every question asks about
  that one statement in different words (question frames × wordings of the subject: "the
  boathouse door code", "the code of the boathouse door", …), since a fact asked only one way is
  not learned for other wordings; without one, one question per top statement. The answer is the
  statement, so every word of it is in the document;
- judging: faithful = the answer's content words all occur in the chunk; standalone = the
  question names its subject instead of pointing at "the text".

Any other prompt (self-instruct, the answer judge) gets a clear error: extraction cannot write
new instructions or grade answers, and saying so beats returning noise.
"""

from __future__ import annotations

import re
from typing import Any

from tuneloop.errors import UsageError

NAME = "extractive"
_COPULAS = (" is ", " are ", " was ", " were ")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")
_POINTING = ("the text", "the passage", "this document", "the document", "the author")
_FUNCTION = frozenset(["a", "an", "the", "of", "to", "in", "on", "at", "by", "for", "and", "or",
                       "is", "are", "was", "were", "be", "it", "its", "this", "that", "with", "as",
                       "from"])
# Ways people ask about "S is V": kept apart from the phrasings of any one dataset on purpose.
_WHAT_FRAMES = (
    "What {v} {s}?",
    "Do you know what {s} {v}?",
    "Could you tell me what {s} {v}?",
    "Which one {v} {s}?",
    "Sorry, what {v} {s} again?",
    "I'm new here. What {v} {s}?",
    "Can someone remind me what {s} {v}?",
    "Who or what {v} {s}, please?",
)
_BY_FRAMES = (
    "Who {v} {s} {p} by?",
    "By whom {v} {s} {p}?",
    "Do you know who {s} {v} {p} by?",
    "Which person {v} {s} {p} by?",
    "Sorry, who {v} {s} {p} by again?",
    "Tell me who {s} {v} {p} by.",
)
_CLOZE_FRAMES = ("{c}?", "Do you know: {c}?", "Quick check: {c}?", "Sorry to ask, but {c}?")


def statements(chunk: str) -> list[str]:
    """The chunk's statements: bullet items and prose sentences (headings and blanks skipped)."""
    out: list[str] = []
    for line in chunk.splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if _BULLET.match(text):
            out.append(_BULLET.sub("", text).strip())
            continue
        out.extend(s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", text) if s.strip())
    return [s if s.endswith((".", "!", "?")) else s + "." for s in out if len(s.split()) >= 3]


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower())) - _FUNCTION


def _lower_first(text: str) -> str:
    # "The co-op's …" → "the co-op's …", but a name ("Brinewatch probes …") keeps its capital
    first = text.split(" ", 1)[0]
    words = ("The", "A", "An", "Our", "Every", "Each", "All", "Any", "No", "Some")
    return text[0].lower() + text[1:] if first in words else text


def subject_wordings(subject: str) -> list[str]:
    """The subject as written and reworded: possessive ↔ "of", a compound noun's head first."""
    s = _lower_first(subject.strip())
    out = [s]
    if m := re.fullmatch(r"(the |our )?(.+?)'s (.+)", s):
        owner = ("the " if not m.group(1) else m.group(1)) + m.group(2)
        if m.group(2)[0].isupper():  # "Kelpwise buoy's service code" → "…of the Kelpwise buoy"
            owner = "the " + m.group(2)
        out.append(f"the {m.group(3)} of {owner}")
    elif m := re.fullmatch(r"the (\w[\w-]*) of (.+)", s):
        out.append(f"{m.group(2)}'s {m.group(1)}")
    elif ((m := re.fullmatch(r"the ((?:[\w-]+ )+)([\w-]+)", s)) and len(m.group(1).split()) >= 2
          and not re.search(r"\b(?:at|in|on|for|from|with|to|by)\b|[A-Z]", m.group(1))):
        # "the boathouse door code" → "the code of the boathouse door"; never across a
        # preposition or a name ("the key safe code at Scarrow Lodge" stays as written)
        out.append(f"the {m.group(2)} of the {m.group(1).strip()}")
    return list(dict.fromkeys(out))


def split_copula(sentence: str) -> tuple[str, str, str] | None:
    """(subject, verb, rest) of "S is R." at the first copula outside quotes, else None."""
    body = sentence.rstrip(".!?")
    for verb in _COPULAS:
        k = body.find(verb)
        if k > 0 and body[:k].count('"') % 2 == 0:
            return body[:k], verb.strip(), body[k + len(verb):]
    return None


def _cloze(sentence: str, value: str) -> str | None:
    """The sentence with `value` replaced by a question word, or None when it lacks it."""
    k = sentence.lower().find(value.lower())
    if k < 0:
        return None
    after = sentence[k + len(value):]
    # "18 metres" → "how many metres"; a bare number is a code or a label → "what"
    counted = re.fullmatch(r"[\d.,]+", value) and re.match(r" [a-z]", after)
    wh = "how many" if counted else "who" if _is_name(value) else "what"
    return (sentence[:k] + wh + after).rstrip(".!? ")


def _is_name(text: str) -> bool:
    return re.fullmatch(r"[A-Z][a-z]+(?: [A-Z][a-z'-]+)+", text) is not None


def questions_for(sentence: str, value: str | None, n: int) -> list[str]:
    """Up to `n` distinct questions whose answer is `sentence` (frames × subject wordings)."""
    parts = split_copula(sentence)
    cloze = _cloze(sentence, value) if value else None
    qs: list[str] = []
    # "S is recalibrated every 21 days" / "S is called X": a state, not an identity — ask by cloze
    described = parts is not None and re.match(r"(?:[a-z]+ed|called|named|held|kept|run|made|"
                                               r"set|known|given|taken|paid|built|sent)\b",
                                               parts[2]) and " by " not in parts[2]
    if described and not cloze:
        return []  # "Ropes are retired after 150 hours" is no "what are ropes?" — say nothing
    if parts is not None and not (described and cloze):
        subject, verb, rest = parts
        by = re.match(r"([a-z]+ed) by ", rest)
        frames = _BY_FRAMES if by else _WHAT_FRAMES
        wordings = subject_wordings(subject)
        for k in range(len(frames) * len(wordings)):
            frame, s = frames[k % len(frames)], wordings[(k // len(frames) + k) % len(wordings)]
            q = frame.format(v=verb, s=s, p=by.group(1) if by else "")
            if not by and _is_name(rest):  # a person: "Who is the director of the co-op?"
                q = (q.replace("Who or what", "Who").replace("What", "Who").replace("what", "who")
                     .replace("Which one", "Which person"))
            qs.append(q[0].upper() + q[1:])
        if cloze:
            qs.insert(2, cloze + "?")
    elif cloze:
        qs = [f.format(c=cloze if f == "{c}?" else cloze[0].lower() + cloze[1:])
              for f in _CLOZE_FRAMES]
    return list(dict.fromkeys(qs))[:n]


def answer_forms(sentence: str) -> list[str]:
    """The statement as written and as "Subject: value." — both only the document's words, and
    the second keeps a long statement's answer from repeating a reference answer word for word
    (iterate drops rows that share 13 words with a suite)."""
    parts = split_copula(sentence)
    if parts is None:
        return [sentence]
    subject, _, rest = parts
    if re.match(r"[a-z]+ed by ", rest):  # "founded by X" reads wrong after a colon
        return [sentence]
    return [f"{subject}: {rest}.", sentence]


def rank_statements(chunk: str, focus: set[str], values: list[str]) -> list[str]:
    """Statements holding a wanted value first, then by focus-word overlap (stable)."""
    found = statements(chunk)
    lowered = [v.lower() for v in values if v]

    def score(item: tuple[int, str]) -> tuple[int, int, int]:
        k, s = item
        return (-sum(v in s.lower() for v in lowered), -len(focus & _words(s)), k)

    return [s for _, s in sorted(enumerate(found), key=score)]


class ExtractiveGenerator:
    """A Generator (backends.base) that answers the document prompts by extraction (module doc)."""

    name = NAME

    def generate(self, prompts: list[list[dict[str, str]]], params: Any) -> list[str]:
        """One reply per prompt, recognised by the document prompt it came from."""
        return [self._reply(p[-1]["content"]) for p in prompts]

    def _reply(self, text: str) -> str:
        if "Write up to" in text and '"""' in text:
            return self._write(text)
        if "fully supported by the source text" in text:
            return self._faithful(text)
        if "understood and answered by someone" in text:
            q = text.rsplit("Question:", 1)[1].lower()
            bad = any(w in q for w in _POINTING)
            return ("It points at its source. [[NO]]" if bad else "It names its subject. [[YES]]")
        raise UsageError(
            "the extractive generator only writes document-grounded questions (synth docs, "
            "iterate); it cannot write new instructions or grade answers",
            fix="pass a capable model for this stage: --generator openai:URL#model")

    @staticmethod
    def _write(text: str) -> str:
        chunk = text.split('"""')[1]
        n = int(m.group(1)) if (m := re.search(r"Write up to (\d+)", text)) else 3
        focus_line = text.split("Focus on:", 1)[1].split("\n")[0] if "Focus on:" in text else ""
        values = []
        if "The answer states:" in focus_line:
            focus_line, _, stated = focus_line.partition("The answer states:")
            values = [v.strip(" .") for v in stated.split(";") if v.strip(" .")]
        ranked = rank_statements(chunk, _words(focus_line), values)
        pairs: list[tuple[str, str]] = []
        if values:  # targeted: many wordings of the one statement that holds the value
            for sentence in ranked[:1]:
                forms = answer_forms(sentence)
                pairs = [(q, forms[k % len(forms)])
                         for k, q in enumerate(questions_for(sentence, values[0], n))]
        else:
            for sentence in ranked:
                if len(pairs) >= n:
                    break
                pairs += [(q, sentence) for q in questions_for(sentence, None, 1)]
        return "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in pairs)

    @staticmethod
    def _faithful(text: str) -> str:
        chunk = text.split('"""')[1].lower()
        answer = text.rsplit("Answer:", 1)[1]
        missing = sorted(w for w in _words(answer) if w not in chunk)
        if missing:
            return f"Not in the source: {', '.join(missing[:5])}. [[NO]]"
        return "Every word of the answer is in the source. [[YES]]"


__all__ = ["ExtractiveGenerator", "answer_forms", "questions_for", "rank_statements", "split_copula",
           "statements", "subject_wordings"]
