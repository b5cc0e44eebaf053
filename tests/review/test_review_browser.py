"""The review page as reviewers use it: headless Chromium writes a row for a failed case and
rejects a generated row against a real server; every case, answer, chunk, row and name holding
<script> / <img onerror> shows as text and never runs (R22)."""

from __future__ import annotations

import json

import pytest
from browser import CHROMIUM_ARGS, chromium_path
from fakeserver import serve_app
from reviewhelp import CASES, CHUNKS, IMG_PAYLOAD, ROWS, SCRIPT_PAYLOAD, write_round

from tuneloop.review.export import export_reviewed

EVIL = f"{SCRIPT_PAYLOAD} and {IMG_PAYLOAD}"


def _evil_round(root):
    cases = [dict(CASES[0], prompt=[{"role": "user", "content": f"What is the dive limit? {EVIL}"}],
                  output=f"Answer: {EVIL}"), CASES[2]]
    rows = [ROWS[0], {"messages": [{"role": "user", "content": f"Who leads it? {IMG_PAYLOAD}"},
                                   {"role": "assistant", "content": f"Answer: {SCRIPT_PAYLOAD}"}],
                      "meta": {"source": "machine", "document": "handbook.md", "chunk": 3}}]
    chunks = {"dive-limit": dict(CHUNKS["dive-limit"], text=f"Dives stop at 18 metres. {EVIL}")}
    return write_round(root, cases, rows, chunks)


@pytest.mark.browser
def test_write_a_row_and_reject_one_with_payloads_shown_as_text(tmp_path):
    """Sign in (as a name holding markup), write a row for the failed case, reject the payload
    row; the page shows every payload literally, no dialog fires, no injected element exists;
    the database and the export hold exactly what was typed."""
    from playwright.sync_api import sync_playwright

    from tuneloop.review.app import create_app
    from tuneloop.review.server import prepare

    files = _evil_round(tmp_path / "loop")
    db = tmp_path / "review.sqlite"
    store, inputs = prepare(files["result"], db, rows=files["rows"], targets=files["targets"])
    case = inputs.cases[0].id
    evil_row = inputs.rows[1].id
    answer = f"Answer: 18 metres, never deeper. {SCRIPT_PAYLOAD} — Tide Desk"
    requests: list[str] = []
    with serve_app(create_app(store, inputs)) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"{base}/")
            assert page.url.endswith("/login")
            page.fill("input[name=name]", IMG_PAYLOAD)
            page.click("button[type=submit]")
            page.wait_for_selector("#cases")

            def assert_inert() -> None:
                body = page.inner_text("body")
                assert body.count(SCRIPT_PAYLOAD) >= 4 and body.count(IMG_PAYLOAD) >= 4
                assert page.locator("img").count() == 0
                assert page.locator("script").count() == 0  # the page runs no script at all
                assert dialogs == []

            assert_inert()
            assert f"{IMG_PAYLOAD}: 0 of 3 item(s) saved" in page.inner_text("#progress")
            assert "in your own words" in page.inner_text("#notice")
            assert "Dives stop at 18 metres." in page.inner_text(f"[id='{case}'] .chunk")

            # Write a row for the failed case in other words than the suite's question.
            form = page.locator(f"[id='{case}'] form")
            form.locator("textarea[name=question]").fill("How deep may a co-op diver go?")
            form.locator("textarea[name=answer]").fill(answer)
            form.locator("button[value=write]").click()
            page.wait_for_selector(f"[id='{case}'] .status.written")
            assert page.url.endswith(f"/#{case}")

            # Reject the generated row holding the payloads.
            page.locator(f"[id='{evil_row}'] button[value=reject]").click()
            page.wait_for_selector(f"[id='{evil_row}'] .status.rejected")
            assert_inert()
            saved = page.locator(f"[id='{case}'] textarea[name=answer]").input_value()
            assert saved == answer  # shown back as text inside the form
            assert f"{IMG_PAYLOAD}: 2 of 3 item(s) saved" in page.inner_text("#progress")
            page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
        finally:
            browser.close()
    # Offline: every request went to the review server itself.
    assert requests and all(u.startswith(base) for u in requests), requests
    actions = {(r.item_id, r.reviewer): r.action for r in store.reviews()}
    assert actions == {(case, IMG_PAYLOAD): "written", (evil_row, IMG_PAYLOAD): "rejected"}
    store.close()
    summary = export_reviewed(db, tmp_path / "reviewed.jsonl")
    assert (summary.rows, summary.rejected) == (1, 1)
    [row] = [json.loads(x) for x in
             (tmp_path / "reviewed.jsonl").read_text(encoding="utf-8").splitlines()]
    assert row["messages"] == [{"role": "user", "content": "How deep may a co-op diver go?"},
                               {"role": "assistant", "content": answer}]
    assert row["meta"]["source"] == "human" and row["meta"]["targets"] == ["dive-limit"]
    assert (tmp_path / "review.png").stat().st_size > 10_000
