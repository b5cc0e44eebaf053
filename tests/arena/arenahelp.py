"""Arena test helpers: a scripted OpenAI-compatible backend, prompt files, an HTTP rater, Chromium."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from pagehelp import SignedIn

# The in-thread uvicorn helper shared with the backend tests.
sys.path.insert(0, str(Path(__file__).parent.parent / "backends"))

from fakeserver import chat_response

SCRIPT_PAYLOAD = '<script>window.__xss = 1</script>'
IMG_PAYLOAD = '<img src=x onerror="window.__xss = 2">'
PROMPTS = [
    {"id": "q1", "prompt": "Name a prime number."},
    {"id": "q2", "prompt": "What colour is the sky?"},
    {"id": "q3", "messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Say hi <b>bold</b> & co."}]},
]


def scripted_answer(model: str, messages: list[dict]) -> str:
    """What the fake backend answers: a tag (the model name reversed, so a page showing the answer
    does not thereby show the name) and the prompt, or an XSS payload for the model 'evil'."""
    if model == "evil":
        return f"{SCRIPT_PAYLOAD} and {IMG_PAYLOAD}"
    system = f" [system: {messages[0]['content']}]" if messages[0]["role"] == "system" else ""
    return f"({model[::-1]}) answer to: {messages[-1]['content']}{system}"


def fake_openai_app():
    """An OpenAI-compatible chat endpoint answering with `scripted_answer` (counts its calls)."""
    app = FastAPI()
    app.state.calls = 0

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        app.state.calls += 1
        return chat_response(scripted_answer(body["model"], body["messages"]), body["model"])

    return app


def write_prompts(path: Path, rows: list[dict] = PROMPTS) -> Path:
    """Write prompt rows as JSONL."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


_FIELD = re.compile(r'name="(battle_id|csrf)" value="([^"]+)"')


class Rater(SignedIn):
    """One browser-less rater: a cookie jar, the current battle id and CSRF token."""

    def battle(self) -> tuple[str, str, str]:
        """GET / → (battle id, csrf token, page html)."""
        r = self.http.get("/")
        assert r.status_code == 200, r.text
        fields = dict(_FIELD.findall(r.text))
        return fields["battle_id"], fields["csrf"], r.text

    def vote(self, battle_id: str, csrf: str, choice: str = "a", reason: str = "",
             **extra) -> httpx.Response:
        """POST /vote as the browser form does."""
        return self.http.post("/vote", data={"battle_id": battle_id, "csrf": csrf,
                                             "choice": choice, "reason": reason, **extra})
