"""`tuneloop serve` as a subprocess on 127.0.0.1, driven by the official openai client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from servehelp import TUNELOOP, free_port


def _client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0,
                         timeout=120)


MSG = [{"role": "user", "content": "What is the capital of France?"}]


def test_models_lists_the_served_model(served_tiny):
    ids = [m.id for m in _client(served_tiny).models.list()]
    assert ids == [served_tiny.model]


def test_chat_completion_usage_and_n(served_tiny):
    c = _client(served_tiny)
    out = c.chat.completions.create(model=served_tiny.model, messages=MSG, max_tokens=8, n=3,
                                    temperature=1.0, seed=3)
    assert out.object == "chat.completion"
    assert [ch.index for ch in out.choices] == [0, 1, 2]
    for ch in out.choices:
        assert ch.message.role == "assistant"
        assert ch.finish_reason in ("stop", "length")
    assert out.usage.prompt_tokens > 5
    assert 1 <= out.usage.completion_tokens <= 3 * 8
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_seed_makes_sampling_reproducible(served_tiny):
    c = _client(served_tiny)
    kw = {"model": served_tiny.model, "messages": MSG, "max_tokens": 12, "temperature": 1.0,
          "top_p": 0.9}
    a = c.chat.completions.create(seed=11, **kw).choices[0].message.content
    b = c.chat.completions.create(seed=11, **kw).choices[0].message.content
    others = {c.chat.completions.create(seed=s, **kw).choices[0].message.content
              for s in (12, 13, 14)}
    assert a == b
    assert others - {a}, "different seeds should give some different samples"


def test_streaming_equals_non_streaming_greedy(served_tiny):
    """SSE chunks (role first, deltas, finish, usage, [DONE]) add up to the greedy answer."""
    c = _client(served_tiny)
    full = c.chat.completions.create(model=served_tiny.model, messages=MSG, max_tokens=16,
                                     temperature=0)
    stream = c.chat.completions.create(model=served_tiny.model, messages=MSG, max_tokens=16,
                                       temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices
                and ch.choices[0].finish_reason]
    assert text == full.choices[0].message.content
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_stream_raw_sse_ends_with_done(served_tiny):
    body = {"model": served_tiny.model, "messages": MSG, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", served_tiny.url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {served_tiny.key}"}, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln]
    assert all(ln.startswith("data: ") for ln in lines)
    assert lines[-1] == "data: [DONE]"
    for ln in lines[:-1]:  # every event but the last is a JSON chunk
        assert json.loads(ln[6:])["object"] == "chat.completion.chunk"


def test_stop_string_cuts_output(served_tiny):
    c = _client(served_tiny)
    kw = {"model": served_tiny.model, "messages": MSG, "max_tokens": 24, "temperature": 0}
    full = c.chat.completions.create(**kw).choices[0].message.content
    assert len(full) >= 6, full
    stop = full[4:6]
    cut = c.chat.completions.create(stop=[stop], **kw).choices[0]
    assert cut.message.content == full[: full.find(stop)]
    assert cut.finish_reason == "stop"
    streamed = "".join(ch.choices[0].delta.content or "" for ch in
                       c.chat.completions.create(stop=stop, stream=True, **kw) if ch.choices)
    assert streamed == cut.message.content


def test_text_completions(served_tiny):
    c = _client(served_tiny)
    out = c.completions.create(model=served_tiny.model, prompt=["The quick brown", "List"],
                               max_tokens=5, temperature=0)
    assert out.object == "text_completion"
    assert len(out.choices) == 2
    assert all(ch.finish_reason in ("stop", "length") for ch in out.choices)
    assert out.usage.completion_tokens <= 10
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model=served_tiny.model, prompt="The quick brown", max_tokens=5, temperature=0,
        stream=True) if ch.choices)
    assert streamed == out.choices[0].text


def test_bad_requests_get_openai_errors_and_server_stays_up(served_tiny):
    """R25: bad JSON, out-of-range values, unknown model, oversized body, bad key → 4xx."""
    c = _client(served_tiny)
    auth = {"Authorization": f"Bearer {served_tiny.key}"}
    url = served_tiny.url + "/v1/chat/completions"

    r = httpx.post(url, content=b'{"model": ', headers=auth)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json"

    with pytest.raises(openai.BadRequestError) as exc:
        c.chat.completions.create(model=served_tiny.model, messages=MSG, temperature=3.5)
    assert "temperature" in str(exc.value)
    with pytest.raises(openai.BadRequestError, match="top_p"):
        c.chat.completions.create(model=served_tiny.model, messages=MSG, top_p=0)
    with pytest.raises(openai.BadRequestError, match="messages"):
        c.chat.completions.create(model=served_tiny.model, messages=[])
    with pytest.raises(openai.BadRequestError, match="context length"):
        c.chat.completions.create(model=served_tiny.model, messages=MSG, max_tokens=10**6)
    with pytest.raises(openai.BadRequestError, match="prompt is empty"):
        c.completions.create(model=served_tiny.model, prompt="")
    r = httpx.post(url, json={"model": served_tiny.model, "messages": [{"role": "robot",
                                                                         "content": "x"}]},
                   headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages.0.role"
    with pytest.raises(openai.NotFoundError, match="not served here"):
        c.chat.completions.create(model="gpt-9", messages=MSG)

    # Oversized: refused by size before parsing, with an OpenAI-style body.
    big = json.dumps({"model": served_tiny.model,
                      "messages": [{"role": "user", "content": "x" * (2 << 20)}]})
    r = httpx.post(url, content=big, headers={**auth, "content-type": "application/json"})
    assert r.status_code == 413
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(openai.APIStatusError) as exc:
        c.chat.completions.create(model=served_tiny.model, messages=[
            {"role": "user", "content": "y" * (2 << 20)}])
    assert exc.value.status_code == 413

    bad_key = openai.OpenAI(base_url=served_tiny.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.models.list()
    assert httpx.get(served_tiny.url + "/v1/models").status_code == 401

    # Still serving.
    ok = c.chat.completions.create(model=served_tiny.model, messages=MSG, max_tokens=3)
    assert ok.choices[0].finish_reason in ("stop", "length")
    assert served_tiny.proc.poll() is None


def test_concurrent_requests_are_batched_and_none_dropped(served_tiny):
    c = _client(served_tiny)
    # The server is shared: earlier tests (n=3) already raised max_batch_rows, so count this
    # test's batches instead.
    before = httpx.get(served_tiny.url + "/health").json()["batches_run"]

    def one(i: int) -> str:
        msgs = [{"role": "user", "content": f"Question number {i}"}]
        out = c.chat.completions.create(model=served_tiny.model, messages=msgs, max_tokens=24,
                                        temperature=0)
        return out.choices[0].finish_reason

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(one, range(12)))
    assert len(results) == 12 and all(r in ("stop", "length") for r in results)
    health = httpx.get(served_tiny.url + "/health").json()
    assert health["batches_run"] - before < 12, health  # some requests shared a batch
    assert health["queued"] == 0


def test_non_loopback_bind_without_key_is_refused(tiny_model_dir):
    """R21: --host 0.0.0.0 without --api-key exits non-zero before loading the model."""
    start = time.time()
    res = subprocess.run([TUNELOOP, "serve", str(tiny_model_dir), "--host", "0.0.0.0",
                          "--port", str(free_port())], capture_output=True, text=True,
                         check=False, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert res.returncode != 0
    assert "refusing to listen on '0.0.0.0' without an API key" in res.stderr
    assert "--insecure" in res.stderr
    assert "Traceback" not in res.stderr
    assert time.time() - start < 60


def test_port_in_use_is_a_clean_error(served_tiny):
    port = served_tiny.url.rsplit(":", 1)[1]
    res = subprocess.run([TUNELOOP, "serve", "x", "--port", port], capture_output=True,
                         text=True, check=False, timeout=60)
    assert res.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr and "Traceback" not in res.stderr


def test_check_bind_rules():
    """R21 unit: loopback always allowed; others need a key or --insecure."""
    from tuneloop.errors import ServeError
    from tuneloop.serve.security import check_bind, is_loopback

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        assert is_loopback(host)
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10"):
        assert not is_loopback(host)
        with pytest.raises(ServeError, match="refusing"):
            check_bind(host, None)
        check_bind(host, "key")
        check_bind(host, None, insecure=True)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
