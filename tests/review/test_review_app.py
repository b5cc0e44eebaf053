"""The review app over real HTTP on 127.0.0.1: saves, replacement, refusals, the access key."""

from __future__ import annotations

from fakeserver import serve_app
from reviewhelp import Reviewer, message

from tuneloop.review.export import store_rows


def _items(served) -> tuple[dict[str, str], dict[str, str]]:
    """(case id → item id, first user question → row item id)."""
    cases = {i.data["case_id"]: i.id for i in served.inputs.cases}
    rows = {i.data["question"]: i.id for i in served.inputs.rows}
    return cases, rows


def test_page_lists_failed_cases_with_checks_and_chunks_and_the_rows(served):
    """Only failed cases are listed, each with its question, answer, failed checks and targeted
    chunk; generated rows with their source chunk; the 13-gram rule is said on the page."""
    me = Reviewer(served.url, "Ada")
    ids, html = me.page()
    cases, rows = _items(served)
    assert ids == {"case": [cases["dive-limit"], cases["director"]],
                   "row": list(rows.values())}
    assert "boat booked" not in html  # passed: nothing to write
    assert "What is the dive limit?" in html and "Answer: 30 metres." in html
    assert "icontains" in html and "missing &#39;18 metres&#39;" in html
    assert "starts-with" not in html  # it passed
    assert "handbook.md#3" in html and "Dives stop at 18 metres." in html
    assert "How deep may co-op divers go?" in html and "by fake-gen" in html
    assert "in your own words" in html and "13 words in a row" in html
    assert me.page()[1].count("Odalys Penhallow directs the co-op.") == 2  # case and its row
    me.close()


def test_a_second_save_replaces_the_first_and_keeps_it(served):
    """Saving an item again replaces this reviewer's save (one review per item and reviewer);
    the earlier save is kept in `replaced`; another reviewer's save stands beside it."""
    cases, rows = _items(served)
    ada, bo = Reviewer(served.url, "Ada"), Reviewer(served.url, "Bo")
    ada.page()
    bo.page()
    case = cases["dive-limit"]
    first = ada.save(case, "write", question="How deep can divers at the co-op go?",
                     answer="Answer: 18 metres. — Tide Desk")
    assert first.status_code == 303 and first.headers["location"] == f"/#{case}"
    again = ada.save(case, "write", question="To what depth are co-op dives allowed?",
                     answer="Answer: down to 18 metres. — Tide Desk")
    assert again.status_code == 303
    assert bo.save(case, "write", question="Deepest dive the co-op permits?",
                   answer="Answer: 18 metres. — Tide Desk").status_code == 303
    row = rows["How deep may co-op divers go?"]
    assert ada.save(row, "reject").status_code == 303
    assert ada.save(row, "accept", answer="Answer: 18 metres. — Tide Desk").status_code == 303

    mine = {(r.item_id, r.reviewer): r for r in served.store.reviews()}
    assert len(mine) == 3
    assert mine[(case, "Ada")].question == "To what depth are co-op dives allowed?"
    assert mine[(case, "Ada")].saves == 2
    assert mine[(row, "Ada")].action == "accepted"
    assert served.store.replaced_count() == 2
    _, html = ada.page()
    assert "saved: written" in html and "To what depth are co-op dives allowed?" in html
    assert "Replace my row" in html and "saved: accepted" in html
    assert "Ada: 2 of 4 item(s) saved" in html
    _, summary = store_rows(served.store)
    assert summary.by_kind == {"written": 2, "accepted": 1}
    assert summary.replaced == 2
    ada.close()
    bo.close()


def test_edit_makes_a_human_row_that_keeps_the_machine_answer(served):
    """Save edit: provenance human, meta.edited_from holds the generated answer; CRLF from the
    browser's textarea becomes plain newlines."""
    _, rows = _items(served)
    me = Reviewer(served.url, "Ada")
    me.page()
    row = rows["Who leads the Marrowick Tide Co-op?"]
    r = me.save(row, "edit", answer="Answer: Odalys Penhallow,\r\nthe director. — Tide Desk")
    assert r.status_code == 303, r.text
    [out], _ = store_rows(served.store)
    assert out["messages"][-1]["content"] == "Answer: Odalys Penhallow,\nthe director. — Tide Desk"
    assert out["messages"][0]["content"] == "Who leads the Marrowick Tide Co-op?"
    assert out["meta"]["source"] == "human" and out["meta"]["reviewed"] == "edited"
    assert out["meta"]["edited_from"] == "Answer: Odalys Penhallow. — Tide Desk"
    assert out["meta"]["targets"] == ["director"] and out["meta"]["reviewer"] == "Ada"
    assert out["meta"]["generator"] == "fake-gen"  # the generator's meta is kept
    me.close()


def test_refusals_say_why_and_save_nothing(served):
    """Suite questions (the case's own, or a passing one), empty fields, an accept with a changed
    answer, an unchanged edit, an unknown item, a wrong CSRF token and no session are refused."""
    cases, rows = _items(served)
    me = Reviewer(served.url, "Ada")
    me.page()
    case, row = cases["director"], rows["Who leads the Marrowick Tide Co-op?"]
    refused = {
        "own question": me.save(case, "write", question="Who directs the co-op? Tell me.",
                                answer="Odalys Penhallow."),
        "passing case": me.save(case, "write", question="Odalys: how far ahead is the boat "
                                "booked?", answer="36 hours."),
        "empty": me.save(case, "write", question=" ", answer="Odalys Penhallow."),
        "accept changed": me.save(row, "accept", answer="Answer: someone else."),
        "edit unchanged": me.save(row, "edit", answer="Answer: Odalys Penhallow. — Tide Desk"),
        "bad action": me.save(row, "write", answer=""),
        "unknown item": me.save("../../etc/passwd", "write", question="q", answer="a"),
        "csrf": me.http.post("/save", data={"item": case, "csrf": "forged", "action": "write",
                                            "question": "Who heads it?", "answer": "Odalys."}),
        "extra field": me.http.post("/save", data={"item": case, "csrf": me.csrf,
                                                   "action": "write", "reviewer": "Bo"}),
    }
    statuses = {k: r.status_code for k, r in refused.items()}
    assert statuses == {"own question": 400, "passing case": 400, "empty": 400,
                        "accept changed": 400, "edit unchanged": 400, "bad action": 400,
                        "unknown item": 404, "csrf": 403, "extra field": 400}
    assert "suite case 'director'" in message(refused["own question"])
    assert "in your own words" in message(refused["own question"])
    assert "suite case 'boat'" in message(refused["passing case"])
    assert "press Save edit" in message(refused["accept changed"])
    assert "press Accept" in message(refused["edit unchanged"])
    assert "unknown item" in message(refused["unknown item"])
    anonymous = Reviewer(served.url, "")  # sign-in refused: no session cookie
    assert anonymous.login_response.status_code == 400
    assert anonymous.save(case, "write", question="q", answer="a").status_code == 401
    assert served.store.reviews() == []
    me.close()
    anonymous.close()


def test_access_key_is_required_to_sign_in_when_set(served):
    """With --api-key (how a non-loopback bind is allowed, R21) sign-in needs the key."""
    from tuneloop.review.app import create_app

    with serve_app(create_app(served.store, served.inputs, api_key="team-key")) as url:
        assert Reviewer(url, "Ada").login_response.status_code == 401
        assert Reviewer(url, "Ada", key="wrong").login_response.status_code == 401
        ok = Reviewer(url, "Ada", key="team-key")
        assert ok.login_response.status_code == 303
        ids, html = ok.page()
        assert 'type="password"' not in html and ids["case"]
        ok.close()
        import httpx
        assert 'name="key"' in httpx.get(f"{url}/login").text
