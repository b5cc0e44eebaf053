"""Verdicts from the judge's token probabilities (G-Eval style) instead of its sampled text.

The judge writes `[[7]]` (single), `[[A]]` (pairwise) or `[[YES]]` / `[[NO]]` (yesno: synth's
checks, any case); at the position of the verdict token the backend reports the top alternatives
with their log-probabilities (`Scored.tokens`). Their probability mass on the verdict labels
(ratings 1-10; A, B, C = tie; YES, NO), renormalised over those labels, is the verdict
distribution: single mode scores the expected rating, pairwise reports P(A), P(B), P(tie) and
takes the most likely letter for the both-orders rule, yesno passes at P(YES) > 0.5.

Where the verdict sits: after the judge's explanation, at the last `[[` that the judge follows
with a label; with a forced prefix (the judge was made to continue e.g. `Rating: [[`), at the
first generated token, whatever the judge wrote there.

Rating 10 on tokenizers that split digits is two tokens, `1` then `0`. When the judge wrote
`1` there, the next position's probability of `0` splits the `1` mass into 10 and 1 (exactly the
model's probabilities); when it wrote another digit, the `1` mass counts as rating 1 (the
conditional for `0` is not known), so a small share of 10 may be read as 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tuneloop.backends.base import TokenChoice

SINGLE_LABELS = tuple(str(i) for i in range(1, 11))
PAIR_LABELS = ("A", "B", "C")
YESNO_LABELS = ("YES", "NO")  # a yes/no check (synth's faithfulness and self-containedness)
LABELS = {"single": SINGLE_LABELS, "pairwise": PAIR_LABELS, "yesno": YESNO_LABELS}
_OPENERS = {"single": re.compile(r"\[\[\s*(?=\d)"), "pairwise": re.compile(r"\[\[\s*(?=[ABC])"),
            "yesno": re.compile(r"\[\[\s*(?=[YyNn])")}
SINGLE_PREFIX = "Rating: [["
PAIR_PREFIX = "Verdict: [["
YESNO_PREFIX = "Verdict: [["


@dataclass(frozen=True)
class ProbVerdict:
    """A verdict distribution over labels, and the probability mass the labels had (0-1)."""

    probs: dict[str, float]
    mass: float

    def expected_rating(self) -> float:
        """Σ rating × P(rating) (single mode)."""
        return sum(float(k) * p for k, p in self.probs.items())

    def letter(self) -> str:
        """The most likely of A, B, C (ties broken in that order)."""
        return max(PAIR_LABELS, key=lambda k: (self.probs.get(k, 0.0), -PAIR_LABELS.index(k)))


def token_label(text: str) -> str:
    """The verdict label a token stands for: `' 7'`, `'7'`, `'[[7'`, `'7]]'` are all `'7'`."""
    return text.strip().lstrip("[").rstrip("]").strip()


def _masses(alternatives: Sequence[tuple[str, float]], labels: Sequence[str]) -> dict[str, float]:
    fold = labels is YESNO_LABELS  # "Yes", " yes" and "YES" are the same verdict
    out: dict[str, float] = {}
    for text, logprob in alternatives:
        label = token_label(text).upper() if fold else token_label(text)
        if label in labels:
            out[label] = out.get(label, 0.0) + math.exp(logprob)
    return out


def _alternatives(tok: TokenChoice) -> tuple[tuple[str, float], ...]:
    return tok.top if tok.top else ((tok.token, tok.logprob),)


def verdict_position(tokens: Sequence[TokenChoice], mode: str, prefix: str = "") -> int | None:
    """Index of the generated token that holds the verdict, or None if the judge wrote none."""
    if not tokens:
        return None
    if prefix.rstrip().endswith("[["):  # forced: the first generated token is the verdict
        return 0
    text, starts = prefix, []
    for tok in tokens:
        starts.append(len(text))
        text += tok.token
    ends = [m.end() for m in _OPENERS[mode].finditer(text) if m.end() >= len(prefix)]
    if not ends:
        return None
    pos = ends[-1]  # the final verdict: explanations may quote the format first
    for k, start in enumerate(starts):
        if start <= pos < start + max(1, len(tokens[k].token)):
            return k
    return None


def verdict_distribution(tokens: Sequence[TokenChoice] | None, mode: str,
                         prefix: str = "") -> ProbVerdict | None:
    """The verdict distribution read from token log-probabilities, or None (parse instead)."""
    if not tokens:
        return None
    k = verdict_position(tokens, mode, prefix)
    if k is None:
        return None
    labels = LABELS[mode]
    masses = _masses(_alternatives(tokens[k]), labels)
    if (mode == "single" and "10" not in masses and "1" in masses
            and token_label(tokens[k].token) == "1" and k + 1 < len(tokens)):
        # `1` then `0` is a 10: split the `1` mass by the judge's next-token probability of `0`
        nxt = _masses(_alternatives(tokens[k + 1]), ("0",)).get("0", 0.0)
        one = masses["1"]
        masses["1"], masses["10"] = one * (1.0 - nxt), one * nxt
    total = sum(masses.values())
    if total <= 0.0:
        return None
    return ProbVerdict({label: masses.get(label, 0.0) / total for label in labels}, total)


__all__ = ["LABELS", "PAIR_LABELS", "PAIR_PREFIX", "SINGLE_LABELS", "SINGLE_PREFIX",
           "YESNO_LABELS", "YESNO_PREFIX", "ProbVerdict", "token_label", "verdict_distribution",
           "verdict_position"]
