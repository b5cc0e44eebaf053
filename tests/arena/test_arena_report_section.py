"""`tuneloop report --arena DB`: the arena section with the ratings plot (intervals) and tables."""

from __future__ import annotations

import base64
import re

import pytest
from browser import CHROMIUM_ARGS, chromium_path

from tuneloop.arena.results import arena_results
from tuneloop.arena.store import ArenaStore
from tuneloop.cli import main
from tuneloop.report.arena import ratings_plot

NAMES = ("alpha", "<b>beta</b>", "gamma")


def _arena_db(path):
    """Votes where alpha > beta > gamma, with a model name that needs escaping."""
    store = ArenaStore(path)
    store.add_prompts({"q": [{"role": "user", "content": "hi"}]})
    store.add_models({n: f"spec-{k}" for k, n in enumerate(NAMES)})
    for n in NAMES:
        store.put_answers(n, {"q": f"answer of {n}"}, {})
    _, session = store.create_session("ann")
    plan = [(0, 1, "a")] * 6 + [(0, 1, "b")] * 2 + [(1, 2, "a")] * 5 + [(1, 2, "b")] * 2 + \
        [(0, 2, "a")] * 4 + [(0, 2, "tie")] + [(2, 0, "a")]
    for i, j, winner in plan:
        battle = store.issue_battle(session, "q", NAMES[i], NAMES[j])
        store.cast_vote(session, battle, winner)
    store.close()
    return path


def test_report_gets_an_arena_section(tmp_path, capsys):
    """The report shows ratings in rank order with intervals, a PNG plot and the win-rate matrix."""
    db = _arena_db(tmp_path / "arena.sqlite")
    out = tmp_path / "report.html"
    assert main(["report", "--arena", str(db), "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    section = html.split('<section id="arena">')[1].split("</section>")[0]
    assert "21 vote(s) from 1 rater(s): 20 decisive, 1 tie(s), 0 both bad" in section
    doc = arena_results(db)
    ranked = [r["model"] for r in doc["ratings"]]
    assert ranked == ["alpha", "<b>beta</b>", "gamma"]
    rows = re.findall(r"<tr><td class=\"n\">(\d)</td><td>([^<]*)</td>", section)
    assert rows == [("1", "alpha"), ("2", "&lt;b&gt;beta&lt;/b&gt;"), ("3", "gamma")]
    for r in doc["ratings"]:
        assert f"{r['ci_low']:.0f} – {r['ci_high']:.0f}" in section
    assert "<b>beta</b>" not in html  # escaped everywhere
    png = re.search(r'src="data:image/png;base64,([^"]+)"', section).group(1)
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "95% bootstrap intervals over 1000 resamples" in section
    assert '<a href="#arena">Human arena</a>' in html


def test_report_without_arena_has_no_section(tmp_path):
    """Without --arena nothing changes: no arena section, no nav link."""
    from tuneloop.report.build import render_html

    html, _ = render_html([], [])
    assert 'id="arena"' not in html and "#arena" not in html


def test_ratings_plot_needs_ratings():
    """No rated model → no plot (the section says there are not enough votes)."""
    assert ratings_plot({"ratings": [{"model": "a", "rating": None}]}) is None


@pytest.mark.browser
def test_arena_section_in_headless_chromium(tmp_path):
    """The report's arena plot loads offline and the page still runs no scripts (R22)."""
    from playwright.sync_api import sync_playwright

    db = _arena_db(tmp_path / "arena.sqlite")
    out = tmp_path / "report.html"
    assert main(["report", "--arena", str(db), "--out", str(out)]) == 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(out.as_uri())
            page.wait_for_load_state("load")
            assert "Human arena" in page.inner_text("#arena")
            assert "<b>beta</b>" in page.inner_text("#arena")
            size = page.evaluate("(() => { const i = document.querySelector('#arena img');"
                                 " return [i.complete, i.naturalWidth]; })()")
            assert size[0] and size[1] > 300
            assert page.locator("script").count() == 0
            page.locator("#arena").screenshot(path=str(tmp_path / "arena-report.png"))
        finally:
            browser.close()
    assert (tmp_path / "arena-report.png").stat().st_size > 10_000
