"""A deterministic fake OpenAI-compatible server for synth tests (real HTTP on 127.0.0.1).

Answers come from a responder `f(kind, user_text, n_of_kind) -> str`; `kind` is recognised from
the default synth prompts. Every answered request is counted by its exact body, so tests can
assert that no request was ever answered twice. `hold_after(k)` makes every request after the
k-th answer hang (never answered) until `release()`, which then fails them with 503 uncounted:
a deterministic point at which to kill -9 a client.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "backends"))

from fakeserver import chat_response, serve_app
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

KINDS = {
    "instructions": "Here is a numbered list of varied tasks",
    "classify": "Decide whether the task below is a classification task",
    "instances_output_first": "The task below is a classification task",
    "instances_input_first": "for the task below. Each example has an input",
    "qa": "Write up to",
    "judge_faithful": "Check whether the answer is fully supported",
    "judge_standalone": "Can the question below be understood",
}


def kind_of(text: str) -> str:
    """Which synth prompt a user message came from."""
    for kind, marker in KINDS.items():
        if marker in text:
            return kind
    return "unknown"


class FakeLLM:
    """The app plus its counters; use as `with FakeLLM(responder).serve() as url:`."""

    def __init__(self, responder):
        self.responder = responder
        self.served: Counter = Counter()  # request body → times answered
        self.kinds: Counter = Counter()
        self.log: list[tuple[str, str]] = []  # (kind, user text) in answer order
        self.lock = threading.Lock()
        self.hold_at: int | None = None
        self.held = 0
        self._released = False
        app = FastAPI()

        @app.get("/v1/models")
        async def models():
            return {"object": "list", "data": [{"id": "fake", "object": "model"}]}

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            key = json.dumps(body["messages"], sort_keys=True)
            text = body["messages"][-1]["content"]
            kind = kind_of(text)
            with self.lock:
                hold = self.hold_at is not None and sum(self.served.values()) >= self.hold_at
                if hold:
                    self.held += 1
            if hold:
                while not self._released:
                    await asyncio.sleep(0.05)
                return JSONResponse({"error": {"message": "gone"}}, status_code=503)
            with self.lock:
                n = self.kinds[kind]
                self.kinds[kind] += 1
                answer = self.responder(kind, text, n)
                self.served[key] += 1
                self.log.append((kind, text))
            return chat_response(answer)

        self.app = app

    def serve(self):
        """Context manager yielding the base URL (…/v1 is appended by `spec`)."""
        return serve_app(self.app)

    def hold_after(self, k: int) -> None:
        """Hang every request once k answers have been given in total."""
        self.hold_at, self._released = k, False

    def release(self) -> None:
        """Let held requests fail (503) and answer normally again."""
        self._released = True
        self.hold_at = None

    def reset(self) -> None:
        """Forget the counters."""
        self.served.clear()
        self.kinds.clear()
        self.log.clear()

    @property
    def total(self) -> int:
        """Requests answered."""
        return sum(self.served.values())


def spec(url: str) -> str:
    """The generator spec for a fake server URL."""
    return f"openai:{url}/v1#fake"
