"""ROUGE-L novelty filter: the decisions of `rouge_score` (rougeL, no stemmer), much faster.

Self-Instruct drops a candidate whose ROUGE-L F1 against any task already in the pool exceeds
0.7. `rouge_score` computes each pair with a pure-Python dynamic-programming table (~100 µs a
pair), and the pool grows with every accepted task, so the filter is the hot loop of a run.

Here the same numbers come from three changes that keep every value bit-identical:
- texts are tokenized once with rouge_score's own rule (lowercase, runs of [a-z0-9]) and each
  token becomes one character of a private alphabet, so a text is a short str;
- the LCS length of a candidate against the whole pool comes from rapidfuzz's bit-parallel
  LCSseq (C++, `process.cdist`), an exact integer like rouge_score's table corner;
- precision, recall and F1 are then computed with rouge_score's formulas in float64 (numpy's
  +, *, / are the same IEEE operations as Python's), so equal inputs give equal floats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

THRESHOLD = 0.7
_TOKEN_RE = re.compile(r"[a-z0-9]+")
_BASE = 0x10000  # private alphabet in the supplementary planes: no surrogates, no ASCII
_MAX_VOCAB = 0x10FFFF - _BASE
_BLOCK = 256  # candidates scored against the pool per cdist call


def rouge_tokens(text: str) -> list[str]:
    """rouge_score's default tokenizer without stemming: lowercase, runs of [a-z0-9]."""
    # tokenize.tokenize lowercases, replaces [^a-z0-9]+ with a space, splits and drops empties:
    # exactly the maximal [a-z0-9] runs of the lowercased text.
    return _TOKEN_RE.findall(text.lower())


def f1_from_lcs(lcs: int, n_target: int, n_pred: int) -> float:
    """rouge_score's `_score_lcs` F1 from an LCS length and the two token counts."""
    if not n_target or not n_pred:
        return 0.0
    precision = lcs / n_pred
    recall = lcs / n_target
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def _f1_vector(lcs: np.ndarray, n_cand: int, pool_lens: np.ndarray) -> np.ndarray:
    """F1 of one candidate against many pool entries (same float ops as `f1_from_lcs`)."""
    lcs = lcs.astype(np.float64)
    if n_cand == 0:
        return np.zeros(lcs.shape, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = lcs / pool_lens  # F1 is symmetric bit for bit: 2*p is exact, + commutes
        recall = lcs / n_cand
        total = precision + recall
        f = 2 * precision * recall / total
    return np.where((total > 0) & (pool_lens > 0), f, 0.0)


@dataclass(frozen=True)
class Novelty:
    """The decision for one candidate: its best ROUGE-L F1 in the pool and which task that was."""

    novel: bool
    score: float
    nearest: int | None  # index into the pool (None for an empty pool)
    nearest_text: str | None


class NoveltyPool:
    """A growing set of tasks; `check` / `filter` decide novelty exactly as rouge_score would."""

    def __init__(self, texts: list[str] | tuple[str, ...] = (), threshold: float = THRESHOLD):
        self.threshold = threshold
        self.texts: list[str] = []
        self._vocab: dict[str, int] = {}
        self._codes: list[str] = []
        self._lens_arr = np.zeros(64, dtype=np.float64)  # grows by doubling
        for text in texts:
            self.add(text)

    def __len__(self) -> int:
        return len(self.texts)

    def encode(self, text: str) -> str:
        """The text's rouge tokens as one character each (new tokens get new characters)."""
        out = []
        vocab = self._vocab
        for tok in rouge_tokens(text):
            code = vocab.get(tok)
            if code is None:
                code = len(vocab)
                if code >= _MAX_VOCAB:
                    raise ValueError("novelty pool vocabulary exceeds a million distinct tokens")
                vocab[tok] = code
            out.append(chr(_BASE + code))
        return "".join(out)

    def add(self, text: str) -> None:
        """Put a task in the pool."""
        self._append_code(text, self.encode(text))

    def _best(self, f: np.ndarray) -> tuple[float, int | None]:
        if f.size == 0:
            return 0.0, None
        i = int(np.argmax(f))  # first of equal maxima: the earliest task in the pool
        return float(f[i]), i

    def check(self, text: str) -> Novelty:
        """Score one candidate against the whole pool (does not add it)."""
        code = self.encode(text)
        return self._decide(code, self._lcs_rows([code])[0])

    def _lcs_rows(self, codes: list[str]) -> np.ndarray:
        from rapidfuzz import process
        from rapidfuzz.distance import LCSseq

        if not self._codes:
            return np.zeros((len(codes), 0), dtype=np.int32)
        return process.cdist(codes, self._codes, scorer=LCSseq.similarity, dtype=np.int32,
                             workers=1)

    def _decide(self, code: str, lcs_row: np.ndarray) -> Novelty:
        f = _f1_vector(lcs_row, len(code), self._lens_arr[: lcs_row.shape[0]])
        score, idx = self._best(f)
        return Novelty(novel=not score > self.threshold, score=score, nearest=idx,
                       nearest_text=None if idx is None else self.texts[idx])

    def filter(self, texts: list[str], *, add: bool = True) -> list[Novelty]:
        """Decide candidates in order; with `add`, each novel one joins the pool before the next.

        Same decisions as scoring each candidate with rouge_score against the pool as it stands
        when its turn comes (seeds + everything accepted so far, earlier candidates included).
        """
        from rapidfuzz.distance import LCSseq

        results: list[Novelty] = []
        for start in range(0, len(texts), _BLOCK):
            block = [self.encode(t) for t in texts[start:start + _BLOCK]]
            base = len(self._codes)
            rows = self._lcs_rows(block)  # against the pool as it was before this block
            added: list[int] = []  # pool indices added while deciding this block
            for k, code in enumerate(block):
                row = rows[k]
                if added:
                    extra = np.fromiter((LCSseq.similarity(code, self._codes[j]) for j in added),
                                        dtype=np.int32, count=len(added))
                    row = np.concatenate([row, extra])
                # Pool indices base..base+len(added) are exactly the ones appended in order.
                decision = self._decide(code, row)
                results.append(decision)
                if add and decision.novel:
                    self._append_code(texts[start + k], code)
                    added.append(base + len(added))
        return results

    def truncate(self, n: int) -> None:
        """Forget every task after the first `n` (candidates tried for one round, undone)."""
        del self.texts[n:]
        del self._codes[n:]
        self._lens_arr[n:] = 0.0

    def _append_code(self, text: str, code: str) -> None:
        n = len(self._codes)
        if n == self._lens_arr.size:
            self._lens_arr = np.concatenate([self._lens_arr, np.zeros(n, dtype=np.float64)])
        self._lens_arr[n] = float(len(code))
        self.texts.append(text)
        self._codes.append(code)
