"""Benchmark: the Self-Instruct novelty filter (ROUGE-L F1 > 0.7 → drop) vs rouge_score.

Both sides see the same 5,000 candidate instructions, in order, against a pool that starts with
10,000 tasks and grows with every accepted candidate (Self-Instruct's rule). Texts are generated
deterministically: instruction-like sentences from templates, a third of the candidates being
light edits of earlier tasks (the near-duplicates the filter exists to catch).

tuneloop's filter decides every candidate. rouge_score (RougeScorer(['rougeL'],
use_stemmer=False), ~100 µs a pair) would need hours for all 5,000 × 10,000+ pairs on a 2-core
machine, so by default it scores an evenly spread sample of candidates against the full pool each
of them met (every pair), and its time per candidate is extrapolated to 5,000; every rejection's
witness pair is also re-scored with rouge_score. `--full-reference` runs rouge_score on every
pair instead (slow). Reports the speed ratio and the number of differing decisions (must be 0).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/synth_novelty.py
"""

from __future__ import annotations

import argparse
import random
import time

VERBS = ["Write", "Explain", "Summarize", "Classify", "Describe", "List", "Translate", "Give",
         "Suggest", "Compare", "Rewrite", "Generate", "Identify", "Create", "Find", "Tell me",
         "Outline", "Recommend", "Convert", "Evaluate", "Predict", "Determine", "Name", "Edit"]
DETS = ["a", "the", "three", "five", "some", "two", "an interesting", "a short", "a detailed",
        "a funny", "a formal", "an informal", "ten", "several", "the main", "a few"]
NOUNS = ["poem", "story", "email", "summary", "list of tips", "recipe", "tweet", "headline",
         "slogan", "paragraph", "product description", "cover letter", "joke", "riddle", "essay",
         "argument", "review", "dialogue", "haiku", "limerick", "speech", "question", "answer",
         "title", "definition", "analogy", "metaphor", "plan", "schedule", "checklist", "reason",
         "example", "sentence", "word", "synonym", "antonym", "fact", "quote", "idea", "tagline"]
TOPICS = ["climate change", "the ocean", "machine learning", "a rainy day", "healthy eating",
          "remote work", "space exploration", "the history of Rome", "renewable energy", "cats",
          "time management", "a job interview", "learning a language", "the stock market",
          "friendship", "public transport", "coffee", "gardening", "the French revolution",
          "electric cars", "sleep", "social media", "volcanoes", "chess", "a birthday party",
          "photosynthesis", "the moon landing", "online privacy", "marathon training", "jazz",
          "quantum computing", "a small business", "urban planning", "bees", "the water cycle"]
TAILS = ["", "", "", " for children", " in under 50 words", " in a formal tone",
         " using simple language", " for a blog post", " with three examples",
         " and explain your reasoning", " as a bulleted list", " for a high school class",
         " that rhymes", " from the point of view of a teacher", " in one sentence"]
PREPS = ["about", "on", "for", "regarding", "related to", "describing"]
FILLER = ["please", "quickly", "carefully", "briefly", "also", "then", "first", "finally",
          "really", "very", "new", "old", "good", "best", "main", "simple", "clear", "local"]


def make_task(rng: random.Random) -> str:
    """One instruction-like sentence from the templates."""
    text = (f"{rng.choice(VERBS)} {rng.choice(DETS)} {rng.choice(NOUNS)} {rng.choice(PREPS)} "
            f"{rng.choice(TOPICS)}{rng.choice(TAILS)}")
    if rng.random() < 0.3:
        text += f", {rng.choice(FILLER)} {rng.choice(PREPS)} {rng.choice(TOPICS)}"
    if rng.random() < 0.2:
        text += f". Then {rng.choice(VERBS).lower()} {rng.choice(DETS)} {rng.choice(NOUNS)}"
    return text + rng.choice([".", ".", "?", "!", ""])


def edit(text: str, rng: random.Random) -> str:
    """A near-duplicate: a word or two swapped, inserted or dropped."""
    words = text.split()
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        i = rng.randrange(len(words))
        if op < 0.4:
            words[i] = rng.choice(FILLER + NOUNS)
        elif op < 0.7:
            words.insert(i, rng.choice(FILLER))
        elif len(words) > 4:
            del words[i]
    return " ".join(words)


def make_data(n_pool: int, n_cand: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(initial pool, candidates), deterministic for a seed."""
    rng = random.Random(seed)
    pool = [make_task(rng) for _ in range(n_pool)]
    cands: list[str] = []
    for _ in range(n_cand):
        if rng.random() < 0.33:
            src = rng.choice(pool + cands) if cands else rng.choice(pool)
            cands.append(edit(src, rng))
        else:
            cands.append(make_task(rng))
    return pool, cands


def reference_best(scorer, cand: str, pool: list[str]) -> tuple[float, int]:
    """rouge_score's best F1 of `cand` over `pool` (and the first index reaching it)."""
    best, where = 0.0, -1
    for j, other in enumerate(pool):
        f = scorer.score(cand, other)["rougeL"].fmeasure
        if f > best:
            best, where = f, j
    return best, where


def main() -> None:
    """Run both filters and print the speed ratio and the differing decisions."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=10_000)
    ap.add_argument("--candidates", type=int, default=5_000)
    ap.add_argument("--ref-sample", type=int, default=25,
                    help="candidates rouge_score scores against their full pool")
    ap.add_argument("--full-reference", action="store_true",
                    help="run rouge_score on every candidate (hours on 2 cores)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from rouge_score import rouge_scorer

    from tuneloop.synth.novelty import THRESHOLD, NoveltyPool

    pool0, cands = make_data(args.pool, args.candidates, args.seed)
    print(f"pool {len(pool0)} tasks, {len(cands)} candidates, threshold {THRESHOLD}")

    t0 = time.perf_counter()
    fast = NoveltyPool(pool0)
    decisions = fast.filter(cands)
    t_fast = time.perf_counter() - t0
    kept = sum(d.novel for d in decisions)
    print(f"tuneloop NoveltyPool: {t_fast:.2f} s for {len(cands)} candidates "
          f"({kept} kept, {len(cands) - kept} dropped; final pool {len(fast)})")

    # The pool each candidate met: the initial pool + candidates accepted before it.
    met: list[int] = []
    size = len(pool0)
    for d in decisions:
        met.append(size)
        size += d.novel
    final_pool = fast.texts
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)

    if args.full_reference:
        sample = list(range(len(cands)))
    else:
        step = max(1, len(cands) // max(1, args.ref_sample))
        sample = list(range(step // 2, len(cands), step))[: args.ref_sample]
    differ = 0
    score_mismatch = 0
    pairs = 0
    t0 = time.perf_counter()
    for i in sample:
        best, where = reference_best(scorer, cands[i], final_pool[: met[i]])
        pairs += met[i]
        ref_novel = not best > THRESHOLD
        differ += ref_novel != decisions[i].novel
        score_mismatch += best != decisions[i].score or (best > 0
                                                          and where != decisions[i].nearest)
    t_ref = time.perf_counter() - t0
    per_cand = t_ref / len(sample)
    t_ref_all = per_cand * len(cands)
    print(f"rouge_score: {t_ref:.1f} s for {len(sample)} candidates x their full pool "
          f"({pairs} pairs, {t_ref / pairs * 1e6:.1f} us/pair)"
          + ("" if args.full_reference else f" -> {t_ref_all:.0f} s extrapolated to "
             f"{len(cands)}"))

    # Every rejection names the pool task that beat the threshold: rouge_score must agree.
    witness_differ = 0
    for i, d in enumerate(decisions):
        if not d.novel:
            f = scorer.score(cands[i], final_pool[d.nearest])["rougeL"].fmeasure
            witness_differ += (f != d.score) or not f > THRESHOLD
    print(f"decisions compared on {len(sample)} candidates (all pairs): differing {differ}, "
          f"best-score/nearest-task mismatches {score_mismatch}")
    print(f"rejections re-scored by rouge_score: {len(cands) - kept}, differing {witness_differ}")
    print(f"speed ratio (rouge_score / tuneloop): {t_ref_all / t_fast:.0f}x")


if __name__ == "__main__":
    main()
