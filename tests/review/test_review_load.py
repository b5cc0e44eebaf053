"""50 concurrent saves over real HTTP (threads against uvicorn on 127.0.0.1): none lost or doubled."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from fakeserver import serve_app
from reviewhelp import Reviewer, write_round

from tuneloop.review.export import store_rows

N = 50


def _round(root):
    cases = [{"id": f"locker-{k}", "prompt": [{"role": "user",
                                                "content": f"What is the code of locker {k}?"}],
              "output": "I do not know.", "passed": False, "tags": [],
              "checks": [{"name": "icontains", "passed": False, "detail": ""}]}
             for k in range(N // 2)]
    rows = [{"messages": [{"role": "user", "content": f"Which code opens locker {k}?"},
                          {"role": "assistant", "content": f"Locker {k} opens with {k:04d}."}],
             "meta": {"source": "machine", "document": "lockers.md", "chunk": k}}
            for k in range(N // 2)]
    return write_round(root, cases, rows, chunks=None)


def test_50_concurrent_saves_lose_none_and_double_none(tmp_path):
    """Wave 1: 50 saves at once (25 written rows, 25 accept/reject/edit, two reviewers): 50
    reviews. Wave 2: the same 50 saved again at once with new text: still 50 reviews, each
    holding the second text, and 50 earlier saves kept as replaced."""
    from tuneloop.review.app import create_app
    from tuneloop.review.server import prepare

    files = _round(tmp_path / "loop")
    store, inputs = prepare(files["result"], tmp_path / "review.sqlite", rows=files["rows"])
    items = [*inputs.cases, *inputs.rows]
    assert len(items) == N

    def one_save(url: str, k: int, wave: int, start: threading.Barrier) -> int:
        item = items[k]
        me = Reviewer(url, ("Ada", "Bo")[k % 2])
        me.page()
        start.wait()
        if item.kind == "case":
            r = me.save(item.id, "write", question=f"Locker {k}: which code opens it, wave {wave}?",
                        answer=f"The code is {k:04d} (wave {wave}).")
        elif k % 3 == 0:
            r = me.save(item.id, "reject")
        elif k % 3 == 1 and wave == 1:
            r = me.save(item.id, "accept", answer=item.data["answer"])
        else:
            r = me.save(item.id, "edit", answer=f"{item.data['answer']} (checked, wave {wave})")
        me.close()
        return r.status_code

    with serve_app(create_app(store, inputs)) as url:
        for wave in (1, 2):
            start = threading.Barrier(N)
            with ThreadPoolExecutor(N) as pool:
                statuses = list(pool.map(one_save, [url] * N, range(N), [wave] * N, [start] * N))
            assert statuses == [303] * N, Counter(statuses)
            reviews = store.reviews()
            assert len(reviews) == N  # none lost, none doubled
            assert Counter((r.item_id, r.reviewer) for r in reviews).most_common(1)[0][1] == 1
            assert {r.item_id for r in reviews} == {i.id for i in items}
            assert store.replaced_count() == (wave - 1) * N
    for r in store.reviews():
        if r.action in ("written", "edited"):
            assert "wave 2" in r.answer and r.saves == 2
    rows, summary = store_rows(store)
    assert summary.rejected == sum(1 for k in range(N // 2, N) if k % 3 == 0)
    assert summary.rows == N - summary.rejected == len(rows)
    assert summary.by_kind["written"] == N // 2
    store.close()
