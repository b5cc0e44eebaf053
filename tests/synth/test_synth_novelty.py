"""The novelty filter gives rouge_score's ROUGE-L (no stemmer) numbers and decisions exactly."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from tuneloop.synth.novelty import NoveltyPool, rouge_tokens

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
WORDS = ["write", "a", "poem", "about", "the", "sea", "Sea", "sea,", "classify", "tweet", "3",
         "list", "reasons", "why", "é", "naïve", "İstanbul", "x-ray", "C++", "", "—", "don't"]


def _reference(cand: str, pool: list[str]) -> tuple[float, int | None]:
    best, where = 0.0, None
    for j, other in enumerate(pool):
        f = SCORER.score(cand, other)["rougeL"].fmeasure
        if where is None or f > best:
            best, where = f, j
    return best, where


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 14)))


def test_tokens_match_rouge_score():
    """Same tokenizer: lowercase, runs of [a-z0-9]; non-ASCII letters split words."""
    rng = random.Random(1)
    for _ in range(300):
        t = _text(rng)
        assert rouge_tokens(t) == SCORER._tokenizer.tokenize(t)


def test_scores_and_nearest_equal_rouge_score_bit_for_bit():
    """Best F1 over the pool is the same float rouge_score computes, nearest is its first max."""
    rng = random.Random(2)
    pool = [_text(rng) for _ in range(120)]
    index = NoveltyPool(pool)
    for _ in range(60):
        cand = _text(rng)
        got = index.check(cand)
        best, where = _reference(cand, pool)
        assert got.score == best
        if best > 0:
            assert got.nearest == where
        assert got.novel == (not best > 0.7)


def test_filter_grows_pool_within_a_batch():
    """A candidate is compared with earlier candidates of the same batch once they are accepted."""
    index = NoveltyPool(["Write a poem about the sea."])
    cands = ["Explain how tides work on the coast.", "Explain how the tides work on a coast.",
             "Write a poem about the sea!", "Name three colours."]
    got = index.filter(cands)
    assert [d.novel for d in got] == [True, False, False, True]
    assert got[1].nearest_text == cands[0]
    assert got[2].nearest_text == "Write a poem about the sea." and got[2].score == 1.0
    assert len(index) == 3


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="ab cAB,é1", max_size=30), min_size=1, max_size=25),
       st.lists(st.text(alphabet="ab cAB,é1", max_size=30), min_size=1, max_size=25))
def test_sequential_filter_matches_reference(pool, cands):
    """Decisions + scores equal a plain rouge_score loop that grows the pool the same way."""
    index = NoveltyPool(pool)
    got = index.filter(cands)
    ref_pool = list(pool)
    for cand, d in zip(cands, got):
        best, _ = _reference(cand, ref_pool)
        assert d.score == best
        assert d.novel == (not best > 0.7)
        if d.novel:
            ref_pool.append(cand)
    assert index.texts == ref_pool
