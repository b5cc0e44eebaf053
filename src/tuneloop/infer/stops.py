"""The one stop-string matcher: cut at the earliest stop, stream only text that cannot become one.

Generation decodes its tokens to text as it goes and hands the whole text so far to
`StopText.update`, which answers the new piece that is safe to show. A piece is held back while
it might still grow into a stop string (the text ends with a stop string's beginning) or ends in
half a UTF-8 character (the tokenizer's U+FFFD); once a stop string appears, the text is cut
before its earliest occurrence and nothing after it is ever shown. `close` releases what was
held when generation ends for another reason (end-of-turn, length).
"""

from __future__ import annotations

from collections.abc import Iterable

REPLACEMENT = "\ufffd"  # what a tokenizer decodes half a UTF-8 character to


def earliest_stop(text: str, stops: Iterable[str], start: int = 0) -> int:
    """Index of the earliest occurrence of any stop string in text[start:], or -1."""
    hits = [i for i in (text.find(s, start) for s in stops if s) if i != -1]
    return min(hits) if hits else -1


def held_suffix(text: str, stops: Iterable[str]) -> int:
    """How many trailing characters of `text` may still be the start of a stop string."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    return hold


class StopText:
    """Incremental text of one generated sequence, cut at its earliest stop string."""

    def __init__(self, stops: Iterable[str] = ()):
        self.stops = tuple(s for s in stops if s)
        self.text = ""  # the text so far (after a stop: cut before it)
        self.emitted = 0  # characters of `text` already released
        self.stopped = False

    def update(self, full: str) -> str:
        """Take the whole decoded text so far; return the newly releasable piece ('' if none)."""
        if self.stopped:
            return ""
        # Everything released is free of a stop's beginning, so a stop can only start after it.
        cut = earliest_stop(full, self.stops, self.emitted) if self.stops else -1
        if cut != -1:
            self.text, self.stopped = full[:cut], True
            return self._release(cut)
        self.text = full
        end = len(full.rstrip(REPLACEMENT)) if full.endswith(REPLACEMENT) else len(full)
        return self._release(end - held_suffix(full[:end], self.stops))

    def close(self, full: str | None = None) -> str:
        """Generation ended (not on a stop string): release everything still held."""
        piece = self.update(full) if full is not None else ""
        return piece + self._release(len(self.text))

    def _release(self, upto: int) -> str:
        if upto <= self.emitted:
            return ""
        piece = self.text[self.emitted:upto]
        self.emitted = upto
        return piece


__all__ = ["StopText", "earliest_stop", "held_suffix"]
