"""R24: 200 votes from 20 concurrent clients on loopback; none lost, none doubled, replays refused."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
from arenahelp import Rater

CLIENTS = 20
VOTES_EACH = 10


def test_200_votes_from_20_concurrent_clients(arena_url, prepared):
    """R24: each vote is posted twice at the same moment (a double-click race) and replayed once more:
    exactly one of the three is accepted, and the database ends with exactly 200 votes."""
    start = threading.Barrier(CLIENTS)
    choices = ("a", "b", "tie", "both_bad")

    def client(k: int) -> list[tuple[str, list[int]]]:
        rater = Rater(arena_url, f"rater-{k:02d}")
        twin = httpx.Client(base_url=arena_url, cookies=rater.http.cookies, timeout=30,
                            follow_redirects=False)
        results = []
        start.wait()
        with ThreadPoolExecutor(2) as pair:
            for n in range(VOTES_EACH):
                battle_id, csrf, _ = rater.battle()
                form = {"battle_id": battle_id, "csrf": csrf, "choice": choices[(k + n) % 4],
                        "reason": ""}
                racing = [pair.submit(c.post, "/vote", data=form) for c in (rater.http, twin)]
                statuses = [f.result().status_code for f in racing]
                statuses.append(rater.http.post("/vote", data=form).status_code)  # replay
                results.append((battle_id, statuses))
        rater.close()
        twin.close()
        return results

    began = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        per_client = list(pool.map(client, range(CLIENTS)))
    elapsed = time.perf_counter() - began

    outcomes = [item for results in per_client for item in results]
    assert len(outcomes) == CLIENTS * VOTES_EACH
    for battle_id, statuses in outcomes:
        assert sorted(statuses) == [303, 409, 409], (battle_id, statuses)
    votes = prepared.store.votes()
    print(f"load: {len(votes)} votes from {CLIENTS} clients in {elapsed:.1f} s "
          f"({3 * len(votes) / elapsed:.0f} vote posts/s incl. races and replays)")
    assert len(votes) == CLIENTS * VOTES_EACH
    assert len({v["vote_id"] for v in votes}) == len(votes)
    assert Counter(v["battle_id"] for v in votes).most_common(1)[0][1] == 1
    assert {v["battle_id"] for v in votes} == {b for b, _ in outcomes}  # none lost
    assert Counter(v["rater"] for v in votes) == {f"rater-{k:02d}": VOTES_EACH
                                                  for k in range(CLIENTS)}
    assert prepared.store.vote_count() == CLIENTS * VOTES_EACH
