"""Which battle a rater sees next: a random prompt and model pair they have not judged, random sides."""

from __future__ import annotations

import random
from itertools import combinations

from tuneloop.arena.store import ArenaStore, Session

# Sides and pairs must not be predictable from earlier battles: the OS's randomness, not a seed.
_RNG = random.SystemRandom()


def next_battle(store: ArenaStore, session: Session, prompt_ids: list[str], models: list[str],
                rng: random.Random = _RNG) -> str:
    """The session's open battle (a reload keeps it), else a newly issued one.

    Items (prompt, unordered pair) this rater already voted on are drawn only once every item
    has been seen; then any item may come back (a repeat measures the rater's consistency).
    """
    open_id = store.open_battle(session)
    if open_id is not None:
        return open_id
    pairs = list(combinations(sorted(models), 2))
    seen = store.voted_items(session.rater)
    fresh = [(p, pair) for p in prompt_ids for pair in pairs if (p, frozenset(pair)) not in seen]
    prompt_id, pair = rng.choice(fresh) if fresh else (rng.choice(prompt_ids), rng.choice(pairs))
    model_a, model_b = rng.sample(pair, 2)
    return store.issue_battle(session, prompt_id, model_a, model_b)
