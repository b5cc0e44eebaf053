"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading
import time

import pytest
from fakeserver import chat_response, serve_app
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tuneloop.backends import GenParams, make_generator, parse_spec
from tuneloop.backends.cache import CachedGenerator
from tuneloop.backends.openai_compat import OpenAIGenerator
from tuneloop.errors import ConfigError, ModelError


class Recorder:
    """Counts requests; answers each with the last user message reversed (deterministic)."""

    def __init__(self, fail_first: int = 0, fail_status: int = 429, delay: float = 0.0):
        self.calls: list[dict] = []
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.auth: list[str | None] = []

    def app(self):
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            import asyncio

            body = await request.json()
            with self.lock:
                self.calls.append(body)
                self.auth.append(request.headers.get("authorization"))
                n = len(self.calls)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.delay:
                    await asyncio.sleep(self.delay)
                if n <= self.fail_first:
                    # retry-after-ms keeps the client's backoff short in tests.
                    return JSONResponse(
                        {"error": {"message": "slow down", "type": "rate_limit", "param": None,
                                   "code": None}},
                        status_code=self.fail_status,
                        headers={"retry-after-ms": "20"},
                    )
                text = body["messages"][-1]["content"][::-1]
                return chat_response(text, body["model"])
            finally:
                with self.lock:
                    self.in_flight -= 1

        return app


def _prompt(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_spec_parsing_names_backends_the_same_way_everywhere():
    assert parse_spec("openai:http://h:1/v1#m") == {
        "type": "openai", "base_url": "http://h:1/v1", "model": "m"}
    assert parse_spec("smollm2-135m-instruct") == {"type": "local", "ref": "smollm2-135m-instruct"}
    with pytest.raises(ConfigError, match="lacks a base URL or model"):
        parse_spec("openai:http://h:1/v1")
    with pytest.raises(ConfigError, match="unknown key"):
        parse_spec({"type": "openai", "base_url": "u", "model": "m", "temprature": 1})
    with pytest.raises(ConfigError, match="not known"):
        parse_spec({"type": "vllm"})


def test_retries_429_then_succeeds(tmp_path):
    """429 twice, then 200: the backend retries with backoff and returns the answer."""
    rec = Recorder(fail_first=2, fail_status=429)
    with serve_app(rec.app()) as url:
        gen = OpenAIGenerator(base_url=url + "/v1", model="m", max_retries=3)
        out = gen.generate([_prompt("abc")], GenParams(max_tokens=5))
    assert out == ["cba"]
    assert len(rec.calls) == 3


def test_retries_5xx_and_gives_up_with_clear_error():
    rec = Recorder(fail_first=100, fail_status=503)
    with serve_app(rec.app()) as url:
        gen = OpenAIGenerator(base_url=url + "/v1", model="m", max_retries=2)
        with pytest.raises(ModelError, match="HTTP 503 after retries"):
            gen.generate([_prompt("x")], GenParams())
    assert len(rec.calls) == 3  # first try + 2 retries


def test_concurrency_limit_and_order():
    rec = Recorder(delay=0.05)
    with serve_app(rec.app()) as url:
        gen = OpenAIGenerator(base_url=url + "/v1", model="m", max_concurrency=3)
        prompts = [_prompt(f"q{i}") for i in range(12)]
        out = gen.generate(prompts, GenParams(max_tokens=3, temperature=0.5, seed=7, stop=["x"]))
    assert out == [f"q{i}"[::-1] for i in range(12)]
    assert 1 < rec.max_in_flight <= 3
    sent = rec.calls[0]
    assert sent["max_tokens"] == 3 and sent["temperature"] == 0.5 and sent["seed"] == 7
    assert sent["stop"] == ["x"]


def test_api_key_from_env_var(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sekret")
    rec = Recorder()
    with serve_app(rec.app()) as url:
        gen = make_generator({"type": "openai", "base_url": url + "/v1", "model": "m",
                              "api_key_env": "MY_KEY", "cache": False})
        gen.generate([_prompt("a")], GenParams())
    assert rec.auth == ["Bearer sekret"]


def test_sqlite_cache_rerun_does_not_hit_server(tmp_path):
    """A second run with the same model, prompts and params is answered from the sqlite file."""
    rec = Recorder()
    db = tmp_path / "cache.sqlite"
    prompts = [_prompt("one"), _prompt("two"), _prompt("one")]
    with serve_app(rec.app()) as url:
        spec = {"type": "openai", "base_url": url + "/v1", "model": "m", "cache": str(db)}
        first = make_generator(spec)
        assert isinstance(first, CachedGenerator)
        out1 = first.generate(prompts, GenParams(max_tokens=4))
        assert len(rec.calls) == 2  # the duplicate prompt is sent once
        # A fresh generator (a re-run in a new process would look the same) reads the file.
        again = make_generator(spec)
        out2 = again.generate(prompts, GenParams(max_tokens=4))
        assert out2 == out1 == ["eno", "owt", "eno"]
        assert len(rec.calls) == 2
        assert again.hits == 3
        # Different params are a different key: the server is queried again.
        again.generate([_prompt("one")], GenParams(max_tokens=5))
        assert len(rec.calls) == 3
    assert db.exists()


def test_unreachable_server_is_a_clear_error():
    from fakeserver import free_port

    gen = OpenAIGenerator(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m",
                          max_retries=0, timeout=2)
    start = time.time()
    with pytest.raises(ModelError, match="cannot reach the server"):
        gen.generate([_prompt("a")], GenParams())
    assert time.time() - start < 30
