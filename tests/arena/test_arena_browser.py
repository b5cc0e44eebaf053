"""The arena as raters use it: headless Chromium clicks and types against a real server (R22, R23).

Screenshots of the battle and reveal pages are written to the test's tmp dir (a test artifact; the
copies in docs/img/arena*.png come from these tests).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from arenahelp import IMG_PAYLOAD, SCRIPT_PAYLOAD
from browser import CHROMIUM_ARGS, chromium_path
from fakeserver import serve_app

from tuneloop.arena.app import create_app
from tuneloop.arena.store import ArenaStore

PROMPTS = {
    "overfit": [{"role": "user", "content": "Explain overfitting in one sentence."}],
    "haiku": [{"role": "system", "content": "You are a concise assistant."},
              {"role": "user", "content": "Write a haiku about gradient descent."}],
}
ANSWERS = {
    "base": {
        "overfit": "Overfitting is when a model is very good. It learns the data and the data is "
                   "learned by the model, which is overfitting.",
        "haiku": "Gradient descent\nis a method that descends\nthe gradient of loss",
    },
    "tuned-lora": {
        "overfit": "Overfitting is when a model memorises the noise in its training data, so it "
                   "scores well on that data but worse on new examples.",
        "haiku": "Small steps down the slope,\nloss whispers which way to go;\nthe valley waits, "
                 "still.",
    },
}


# Builds and submits the vote form for an old battle, as a replaying client would.
REPOST = """([battle, csrf]) => {
  const form = document.createElement("form");
  form.method = "post";
  form.action = "/vote";
  for (const [name, value] of [["battle_id", battle], ["csrf", csrf], ["choice", "b"],
                               ["reason", ""]]) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    form.appendChild(input);
  }
  document.body.appendChild(form);
  form.submit();
}"""


def _store(path: Path, answers: dict[str, dict[str, str]]) -> ArenaStore:
    """An arena with precomputed answers (no model needed)."""
    store = ArenaStore(path)
    store.add_prompts(PROMPTS)
    store.add_models({name: f"precomputed:{name}" for name in answers})
    for name, by_prompt in answers.items():
        store.put_answers(name, by_prompt, {"max_tokens": 64})
    return store


def _sign_in(page, base: str, name: str) -> None:
    page.goto(f"{base}/")  # redirected to the sign-in form
    assert page.url.endswith("/login")
    page.fill("input[name=name]", name)
    page.click("button[type=submit]")
    page.wait_for_selector("#vote-form")


@pytest.mark.browser
def test_vote_by_click_and_by_keyboard_then_reveal(tmp_path):
    """Clicking and pressing B / T record those votes; names appear only after; a re-posted
    revealed battle is refused (R23)."""
    from playwright.sync_api import sync_playwright

    store = _store(tmp_path / "arena.sqlite", ANSWERS)
    app = create_app(store, prompt_ids=list(PROMPTS), models=list(ANSWERS))
    requests: list[str] = []
    with serve_app(app) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            page.on("request", lambda r: requests.append(r.url))
            _sign_in(page, base, "Ada")
            body = page.inner_text("body")
            assert "Answer A" in body and "Answer B" in body
            assert "base" not in body and "tuned-lora" not in body  # blind
            assert "0 vote(s) so far · Ada: 0" in page.inner_text("#progress")
            page.screenshot(path=str(tmp_path / "arena-battle.png"), full_page=True)

            # 1. By click, like a rater who reads: the better (tuned) answer wins, wherever it is.
            first = page.locator("input[name=battle_id]").first.get_attribute("value")
            side = "a" if page.inner_text("#answer-a") in ANSWERS["tuned-lora"].values() else "b"
            page.fill("#reason", "precise and correct")
            page.click(f"#vote-{side}")
            page.wait_for_selector("#verdict")
            battle = store.battle(first)
            assert page.inner_text("#model-a") == battle.model_a
            assert page.inner_text("#model-b") == battle.model_b
            assert f"{side.upper()} is better" in page.inner_text("#verdict")
            assert "precise and correct" in page.inner_text("#verdict")
            assert page.inner_text(f"#model-{side}") == "tuned-lora"
            assert "winner" in page.get_attribute(f"#side-{side}", "class")
            assert "winner" not in page.get_attribute(f"#side-{'b' if side == 'a' else 'a'}",
                                                      "class")
            assert "1 vote(s) so far · Ada: 1" in page.inner_text("#progress")
            page.screenshot(path=str(tmp_path / "arena-reveal.png"), full_page=True)

            # 2. By keyboard: N for the next battle, R + typing is a reason (not a vote), B votes.
            page.keyboard.press("n")
            page.wait_for_selector("#vote-form")
            second = page.locator("input[name=battle_id]").first.get_attribute("value")
            assert second != first
            page.keyboard.press("r")
            page.keyboard.type("bat")  # contains a, b, t: typed text, not shortcuts
            assert page.input_value("#reason") == "bat"
            page.keyboard.press("Escape")
            page.keyboard.press("b")
            page.wait_for_selector("#verdict")
            assert "B is better" in page.inner_text("#verdict")

            # 3. Tie by keyboard; then the browser re-posts that battle's form (a replay after
            # the reveal): refused, the tie stands (R23).
            page.keyboard.press("Enter")
            page.wait_for_selector("#vote-form")
            third = page.locator("input[name=battle_id]").first.get_attribute("value")
            csrf = page.locator("input[name=csrf]").first.get_attribute("value")
            page.keyboard.press("t")
            page.wait_for_selector("#verdict")
            page.evaluate(REPOST, [third, csrf])
            page.wait_for_selector("#message")
            assert page.inner_text("#message").startswith("this battle already has a vote")
        finally:
            browser.close()
    votes = {v["battle_id"]: (v["winner"], v["reason"]) for v in store.votes()}
    assert votes == {first: (side, "precise and correct"), second: ("b", "bat"),
                     third: ("tie", "")}
    # Offline: every request went to the arena itself (no CDN, no fonts, no analytics).
    assert requests and all(u.startswith(base) for u in requests), requests
    for name in ("arena-battle.png", "arena-reveal.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    print(f"screenshots: {tmp_path / 'arena-battle.png'} {tmp_path / 'arena-reveal.png'}")
    store.close()


@pytest.mark.browser
def test_script_and_img_onerror_answers_render_inert(tmp_path):
    """R22: model answers and a rater name holding <script> / <img onerror> show as text, never run."""
    from playwright.sync_api import sync_playwright

    payload = f"{SCRIPT_PAYLOAD} and {IMG_PAYLOAD}"
    answers = {"evil": {k: payload for k in PROMPTS},
               "<b>bold</b>-model": {k: IMG_PAYLOAD for k in PROMPTS}}
    store = _store(tmp_path / "arena.sqlite", answers)
    app = create_app(store, prompt_ids=list(PROMPTS), models=list(answers))
    with serve_app(app) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            _sign_in(page, base, '<img src=x onerror="window.__xss = 3">')
            for stage in ("battle", "reveal"):
                body = page.inner_text("body")
                assert SCRIPT_PAYLOAD in body and IMG_PAYLOAD in body  # shown literally
                assert page.evaluate("typeof window.__xss") == "undefined"
                assert page.locator("img").count() == 0
                assert page.locator("b").count() == 0
                assert page.locator("script").count() == 1  # ours, with the nonce
                if stage == "battle":
                    page.keyboard.press("x")
                    page.wait_for_selector("#verdict")
                    assert "both are bad" in page.inner_text("#verdict")
            assert "<b>bold</b>-model" in page.inner_text("#side-a") + page.inner_text("#side-b")
            page.screenshot(path=str(tmp_path / "arena-xss.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == []
    assert store.vote_count() == 1
    store.close()
