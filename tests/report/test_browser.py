"""The report as a reader sees it: headless Chromium opens the file offline (R22 payloads inert)."""

from __future__ import annotations

import pytest
from browser import CHROMIUM_ARGS, chromium_path
from report_fakes import EXPECTED_FLIPPED, IMG_PAYLOAD, SCRIPT_PAYLOAD

from tuneloop.report import write_report


@pytest.mark.browser
def test_report_in_headless_chromium(fake_workspace, tmp_path):
    """R22: the report renders offline; payload text shows literally and never runs; images load."""
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report.html"
    write_report([fake_workspace.run_a, fake_workspace.run_b], out=out,
                 compare_dirs=[fake_workspace.compare], index_path=tmp_path / "none.sqlite")
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(out.as_uri())
            page.wait_for_load_state("load")
            body = page.inner_text("body")

            for heading in ("tuneloop run report", "Loss curves", "Suite pass rates",
                            "Per-case results", "Config diff", "Data fingerprints",
                            "Contamination"):
                assert heading in body
            assert page.inner_text("#flip-count") == (
                f"{EXPECTED_FLIPPED} case(s) flipped between runs or variants"
            )
            assert page.locator("tr.flipped").count() == EXPECTED_FLIPPED
            assert "json-object" in page.inner_text("tr.flipped >> nth=0")
            assert "capital-fr" in body and "train.lr" in body
            assert "1 of 4 evaluation case(s) share a 13-gram" in body
            # The payloads are visible as text...
            assert SCRIPT_PAYLOAD in body
            assert IMG_PAYLOAD in body
            # ...and inert: nothing ran, no element was injected.
            assert page.evaluate("typeof window.__xss") == "undefined"
            assert page.locator("img[src=x]").count() == 0
            assert page.locator("script").count() == 0

            sizes = page.evaluate(
                "Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
            )
            assert len(sizes) == 3
            assert all(done and width > 0 for done, width in sizes), sizes
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    # Offline: the only thing fetched is the file itself (images are data: URIs).
    assert [u for u in requests if not u.startswith(("file://", "data:"))] == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
