"""The arena over real HTTP (uvicorn on 127.0.0.1): sign-in, blind battles, reveal, refusals."""

from __future__ import annotations

import re

import httpx
from arenahelp import IMG_PAYLOAD, SCRIPT_PAYLOAD, Rater, write_prompts
from fakeserver import serve_app

from tuneloop.arena.app import create_app
from tuneloop.arena.server import prepare
from tuneloop.backends import GenParams


def test_vote_then_reveal_flow(arena_url, prepared):
    """A rater signs in, sees two anonymous answers, votes, and only then sees the model names."""
    ann = Rater(arena_url, "Ann")
    assert ann.login_response.status_code == 303
    assert "httponly" in ann.login_response.headers["set-cookie"].lower()
    assert "samesite=strict" in ann.login_response.headers["set-cookie"].lower()
    battle_id, csrf, html = ann.battle()
    battle = prepared.store.battle(battle_id)
    # Blind: both answers are shown, no model name is.
    side_a = html.split('id="answer-a"')[1].split('id="answer-b"')[0]
    assert f"({battle.model_a[::-1]}) answer to:" in side_a
    assert f"({battle.model_b[::-1]}) answer to:" in html.split('id="answer-b"')[1]
    for name in prepared.models:
        assert name not in html
    assert "0 vote(s) so far" in html and "Ann: 0" in html
    # Reloading shows the same battle, not a new one.
    assert ann.battle()[0] == battle_id
    # No reveal before the vote.
    early = ann.http.get(f"/battle/{battle_id}")
    assert early.status_code == 409
    assert battle.model_a not in early.text and battle.model_b not in early.text
    r = ann.vote(battle_id, csrf, "b", reason="B is <i>clearer</i>")
    assert r.status_code == 303 and r.headers["location"] == f"/battle/{battle_id}"
    reveal = ann.http.get(f"/battle/{battle_id}")
    assert reveal.status_code == 200
    assert f'id="model-a">{battle.model_a}<' in reveal.text
    assert f'id="model-b">{battle.model_b}<' in reveal.text
    assert "B is better" in reveal.text and "B is &lt;i&gt;clearer&lt;/i&gt;" in reveal.text
    assert "1 vote(s) so far" in reveal.text
    votes = prepared.store.votes()
    assert [(v["battle_id"], v["winner"], v["rater"]) for v in votes] == [(battle_id, "b", "Ann")]
    # The next battle is a new one.
    assert ann.battle()[0] != battle_id
    ann.close()


def test_replayed_forged_and_after_reveal_votes_are_refused(arena_url, prepared):
    """R23: a replayed vote, a vote after the reveal, a forged or foreign id, a bad CSRF token."""
    ann, bob = Rater(arena_url, "ann"), Rater(arena_url, "bob")
    battle_id, csrf, _ = ann.battle()
    assert ann.vote(battle_id, csrf, "a").status_code == 303
    assert ann.http.get(f"/battle/{battle_id}").status_code == 200  # revealed
    replay = ann.vote(battle_id, csrf, "a")
    assert replay.status_code == 409 and "exactly one vote" in replay.text
    after_reveal = ann.vote(battle_id, csrf, "b")
    assert after_reveal.status_code == 409
    forged = ann.vote("A" * 22, csrf, "a")
    assert forged.status_code == 404
    bob_battle, bob_csrf, _ = bob.battle()
    stolen = ann.vote(bob_battle, csrf, "a")  # ann's session, bob's battle
    assert stolen.status_code == 403
    wrong_csrf = bob.vote(bob_battle, csrf, "a")  # bob's battle, ann's token
    assert wrong_csrf.status_code == 403 and "CSRF" in wrong_csrf.text
    no_session = httpx.post(f"{arena_url}/vote", data={"battle_id": bob_battle, "csrf": bob_csrf,
                                                       "choice": "a", "reason": ""})
    assert no_session.status_code == 401
    cross_site = bob.http.post("/vote", data={"battle_id": bob_battle, "csrf": bob_csrf,
                                              "choice": "a", "reason": ""},
                               headers={"Origin": "http://evil.example"})
    assert cross_site.status_code == 403
    assert bob.http.get(f"/battle/{battle_id}").status_code == 403  # not bob's to reveal
    votes = prepared.store.votes()
    assert len(votes) == 1 and votes[0]["winner"] == "a"  # the first and only vote stands
    assert bob.vote(bob_battle, bob_csrf, "tie").status_code == 303
    assert prepared.store.vote_count() == 2
    ann.close()
    bob.close()


def test_bad_requests_get_4xx_and_the_server_stays_up(arena_url):
    """R25: oversized, malformed, wrong-type and out-of-range requests are 4xx; /health still ok."""
    ann = Rater(arena_url, "ann")
    battle_id, csrf, _ = ann.battle()
    cases = [
        (ann.http.post("/vote", content=b"x" * 200_000,
                       headers={"content-type": "application/x-www-form-urlencoded"}), 413),
        (ann.http.post("/vote", content=b"\xff\xfe=\x00",
                       headers={"content-type": "application/x-www-form-urlencoded"}), 400),
        (ann.http.post("/vote", json={"battle_id": battle_id}), 415),
        (ann.vote(battle_id, csrf, "c"), 400),
        (ann.vote(battle_id, csrf, "a", reason="r" * 2001), 400),
        (ann.vote(battle_id, csrf, "a", extra="1"), 400),
        (ann.http.post("/vote", content=f"choice=a&choice=b&csrf={csrf}&battle_id={battle_id}",
                       headers={"content-type": "application/x-www-form-urlencoded"}), 400),
        (ann.http.post("/login", data={"name": "   "}), 400),
        (ann.http.post("/login", data={"name": "x" * 41}), 400),
        (ann.http.post("/login", data={"name": "a\x00b"}), 400),
        (ann.http.get("/battle/" + "z" * 5000), 404),
        (ann.http.get("/nope"), 404),
        (ann.http.delete("/vote"), 405),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text[:300])
    assert httpx.get(f"{arena_url}/health").json() == {"status": "ok"}
    # The battle is still open and takes its one vote.
    assert ann.vote(battle_id, csrf, "a").status_code == 303
    ann.close()


def test_pages_escape_text_and_set_a_script_nonce_policy(tmp_path, fake_backend):
    """R22 (HTTP level): payload answers and names arrive escaped; CSP allows only nonce scripts."""
    url, _ = fake_backend
    store, ids, models = prepare(
        _prompts(tmp_path), [f"evil=openai:{url}#evil", f"good=openai:{url}#good"],
        tmp_path / "a.sqlite", GenParams(max_tokens=8), progress=False)
    app = create_app(store, prompt_ids=ids, models=models)
    with serve_app(app) as base:
        rater = Rater(base, '<script>alert("name")</script>')
        assert rater.login_response.status_code == 303
        battle_id, csrf, html = rater.battle()
        assert SCRIPT_PAYLOAD not in html and IMG_PAYLOAD not in html
        assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html
        assert "&lt;script&gt;alert(" in html  # the rater's name, escaped
        policy = rater.http.get("/").headers["content-security-policy"]
        nonce = re.search(r"script-src 'nonce-([^']+)'", policy).group(1)
        assert html.count("<script") == 1  # only our keyboard-shortcut script
        assert "default-src 'none'" in policy and "unsafe-inline" not in policy
        assert len(nonce) >= 16
        rater.vote(battle_id, csrf, "b")
        reveal = rater.http.get(f"/battle/{battle_id}").text
        assert SCRIPT_PAYLOAD not in reveal and reveal.count("<script") == 1
        rater.close()
    store.close()


def _prompts(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "x", "prompt": "say <b>hi</b>"}\n', encoding="utf-8")
    return path


def test_access_key_and_vote_limit(prepared):
    """With an access key, sign-in needs it; a rater limited to 2 votes gets a thank-you page."""
    app = create_app(prepared.store, prompt_ids=prepared.prompt_ids, models=prepared.models,
                     api_key="s3cret", max_votes=2)
    with serve_app(app) as base:
        assert "Access key" in httpx.get(f"{base}/login").text
        assert httpx.get(f"{base}/", follow_redirects=False).headers["location"] == "/login"
        assert Rater(base, "ann").login_response.status_code == 401
        assert Rater(base, "ann", key="wrong").login_response.status_code == 401
        ann = Rater(base, "ann", key="s3cret")
        assert ann.login_response.status_code == 303
        for _ in range(2):
            battle_id, csrf, html = ann.battle()
            assert "of 2" in html
            assert ann.vote(battle_id, csrf, "a").status_code == 303
        done = ann.http.get("/")
        assert done.status_code == 200 and "You have cast the 2 vote(s)" in done.text
        assert 'name="battle_id"' not in done.text
        ann.close()
    assert prepared.store.vote_count("ann") == 2


def test_skip_sets_a_battle_aside(arena_url, prepared):
    """Skip issues a new battle; the skipped one never takes a vote."""
    ann = Rater(arena_url, "ann")
    battle_id, csrf, _ = ann.battle()
    r = ann.http.post("/skip", data={"battle_id": battle_id, "csrf": csrf})
    assert r.status_code == 303
    assert ann.battle()[0] != battle_id
    assert ann.vote(battle_id, csrf, "a").status_code == 409
    assert prepared.store.vote_count() == 0
    ann.close()


def test_answers_are_generated_once_and_reused(tmp_path, fake_backend):
    """A restarted arena on the same --db asks the backend nothing again (answers are stored)."""
    url, fake = fake_backend
    prompts = _prompts(tmp_path)
    specs = [f"one=openai:{url}#one", f"two=openai:{url}#two"]
    before = fake.state.calls
    store, _, _ = prepare(prompts, specs, tmp_path / "a.sqlite", GenParams(max_tokens=4),
                          progress=False)
    assert fake.state.calls - before == 2
    assert store.answer("x", "two") == "(owt) answer to: say <b>hi</b>"
    store.close()
    again, _, _ = prepare(prompts, specs, tmp_path / "a.sqlite", GenParams(max_tokens=4),
                          progress=False)
    assert fake.state.calls - before == 2
    again.close()


def test_answers_from_an_in_process_model_and_an_endpoint(tmp_path, fake_backend, tiny_model_dir):
    """A local model reference (the tiny test model) and an OpenAI endpoint answer side by side."""
    url, _ = fake_backend
    store, ids, models = prepare(
        write_prompts(tmp_path / "p.jsonl"),
        [f"tiny={tiny_model_dir}", f"remote=openai:{url}#remote"], tmp_path / "a.sqlite",
        GenParams(max_tokens=6), progress=False)
    assert models == ["tiny", "remote"]
    for pid in ids:
        assert isinstance(store.answer(pid, "tiny"), str)
        assert store.answer(pid, "remote").startswith("(etomer) answer to:")
    assert store.missing_answers(ids, "tiny") == []
    store.close()


def test_a_model_with_its_own_system_prompt(tmp_path, fake_backend):
    """--system-prompt NAME=TEXT: that model answers with it, unless the prompt has its own."""
    url, _ = fake_backend
    rows = [{"id": "plain", "prompt": "hello"},
            {"id": "own", "messages": [{"role": "system", "content": "Mine."},
                                       {"role": "user", "content": "hey"}]}]
    store, _, _ = prepare(write_prompts(tmp_path / "p.jsonl", rows),
                          [f"base=openai:{url}#m", f"prompted=openai:{url}#m"],
                          tmp_path / "a.sqlite", GenParams(max_tokens=4),
                          system_args=["prompted=Be terse."], progress=False)
    assert store.answer("plain", "base") == "(m) answer to: hello"
    assert store.answer("plain", "prompted") == "(m) answer to: hello [system: Be terse.]"
    assert store.answer("own", "prompted") == "(m) answer to: hey [system: Mine.]"
    # Raters and export see the shared prompt, not a model's own system prompt.
    assert store.prompt_messages("plain") == [{"role": "user", "content": "hello"}]
    store.close()


def test_path_like_ids_reach_no_file(arena_url):
    """R26: no arena request names a file; traversal-shaped ids and routes are unknown ids (404)."""
    ann = Rater(arena_url, "ann")
    battle_id, csrf, _ = ann.battle()
    for path in ("/battle/..%2F..%2F..%2Fetc%2Fpasswd", "/battle/../../etc/passwd",
                 "/../../etc/passwd", "/static/..%2Farena.sqlite"):
        r = ann.http.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert "root:" not in r.text and "SQLite format" not in r.text
    r = ann.vote("../arena.sqlite", csrf, "a")
    assert r.status_code == 404
    assert ann.vote(battle_id, csrf, "a").status_code == 303
    ann.close()
