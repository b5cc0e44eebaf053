"""Log-probabilities from `tuneloop serve` (a real subprocess, the official openai client) equal a
hand computation from the tiny model's logits; every prompt form of /v1/completions works."""

from __future__ import annotations

import math

import httpx
import openai
import pytest

MSG = [{"role": "user", "content": "What is the capital of France?"}]


def _client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0,
                         timeout=120)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from tuneloop.models import load_model

    model, tokenizer = load_model(str(tiny_model_dir))
    return model.eval(), tokenizer


def _logp(model, ids):
    """log p(ids[t] | ids[:t]) for t ≥ 1, and the full next-token log-distributions."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logp = logits.log_softmax(-1)
    return [logp[t - 1, ids[t]].item() for t in range(1, len(ids))], logp


def test_chat_logprobs_equal_the_models_logits(served_tiny, tiny):
    """Each generated token's logprob and its top 5 equal log-softmax of the model's logits."""
    from tuneloop.data.render import Renderer

    model, tokenizer = tiny
    out = _client(served_tiny).chat.completions.create(
        model=served_tiny.model, messages=MSG, max_tokens=6, temperature=0, logprobs=True,
        top_logprobs=5)
    content = out.choices[0].logprobs.content
    assert content and len(content) <= 6
    prompt = Renderer(tokenizer).prompt_ids(MSG)
    gen = [tokenizer.convert_tokens_to_ids(tokenizer.tokenize(c.token))[0] for c in content]
    assert "".join(c.token for c in content) == out.choices[0].message.content
    mine, logp = _logp(model, prompt + gen)
    for k, c in enumerate(content):
        expect = mine[len(prompt) - 1 + k]
        assert math.isclose(c.logprob, expect, abs_tol=1e-4)
        row = logp[len(prompt) - 1 + k]
        top_v, top_i = row.topk(5)
        assert [t.token for t in c.top_logprobs] == [tokenizer.decode([i]) for i in top_i]
        for t, v in zip(c.top_logprobs, top_v.tolist()):
            assert math.isclose(t.logprob, v, abs_tol=1e-4)
        assert c.token == c.top_logprobs[0].token  # greedy picks the most likely token


def test_chat_logprobs_streaming_adds_up(served_tiny):
    """Streamed chunks carry the same per-token logprobs as the non-streaming answer."""
    c = _client(served_tiny)
    kw = {"model": served_tiny.model, "messages": MSG, "max_tokens": 8, "temperature": 0,
          "logprobs": True, "top_logprobs": 2}
    full = c.chat.completions.create(**kw).choices[0].logprobs.content
    streamed = []
    for ch in c.chat.completions.create(stream=True, **kw):
        if ch.choices and ch.choices[0].logprobs and ch.choices[0].logprobs.content:
            streamed += ch.choices[0].logprobs.content
    assert [(t.token, round(t.logprob, 5)) for t in streamed] == [
        (t.token, round(t.logprob, 5)) for t in full]
    assert all(len(t.top_logprobs) == 2 for t in streamed)


def test_completions_echo_gives_prompt_logprobs(served_tiny, tiny):
    """echo + logprobs scores every prompt token (the first: None), also with max_tokens 0/1."""
    model, tokenizer = tiny
    text = "The quick brown fox jumps over the lazy dog."
    ids = tokenizer.encode(text)
    mine, logp = _logp(model, ids)
    c = _client(served_tiny)
    for max_tokens in (0, 1):
        out = c.completions.create(model=served_tiny.model, prompt=text, max_tokens=max_tokens,
                                   echo=True, logprobs=3, temperature=0)
        ch = out.choices[0]
        lp = ch.logprobs
        assert ch.text.startswith(text)
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        got = lp.token_logprobs[1:len(ids)]
        assert len(got) == len(ids) - 1
        for a, b in zip(got, mine):
            assert math.isclose(a, b, abs_tol=1e-4)
        assert len(lp.tokens) == len(ids) + max_tokens
        for t in range(1, len(ids)):  # top 3 (+ the token itself when it is not among them)
            top = lp.top_logprobs[t]
            best = logp[t - 1].topk(3)
            expect: dict[str, float] = {}
            for i, v in zip(best.indices.tolist(), best.values.tolist()):
                expect.setdefault(tokenizer.decode([i]), v)  # texts may repeat: first wins
            for key, v in expect.items():
                assert math.isclose(top[key], v, abs_tol=1e-4)
        assert out.usage.completion_tokens == max_tokens


def test_completions_accept_every_prompt_form(served_tiny, tiny):
    """A string, strings, token ids and token-id lists give the same greedy completions."""
    _, tokenizer = tiny
    c = _client(served_tiny)
    texts = ["The quick brown", "What is the capital"]
    ids = [tokenizer.encode(t) for t in texts]
    kw = {"model": served_tiny.model, "max_tokens": 4, "temperature": 0}
    by_text = [ch.text for ch in c.completions.create(prompt=texts, **kw).choices]
    assert [ch.text for ch in c.completions.create(prompt=ids, **kw).choices] == by_text
    assert c.completions.create(prompt=ids[1], **kw).choices[0].text == by_text[1]
    assert c.completions.create(prompt=texts[0], **kw).choices[0].text == by_text[0]
    echoed = c.completions.create(prompt=ids[0], echo=True, **kw).choices[0].text
    assert echoed == texts[0] + by_text[0]


@pytest.mark.parametrize("path,body,param", [
    ("completions", {"prompt": [[1, 2, 10**7]]}, "prompt"),
    ("completions", {"prompt": [5, -1]}, "prompt"),
    ("completions", {"prompt": "hi", "logprobs": 6}, "logprobs"),
    ("chat/completions", {"messages": MSG, "logprobs": True, "top_logprobs": 21},
     "top_logprobs"),
    ("chat/completions", {"messages": MSG, "top_logprobs": 2}, "top_logprobs"),
])
def test_logprob_limits_and_bad_ids_are_400_naming_the_field(served_tiny, path, body, param):
    """R25: out-of-vocabulary ids and logprobs beyond OpenAI's limits → 400 naming the field."""
    r = httpx.post(f"{served_tiny.url}/v1/{path}", json={"model": served_tiny.model, **body},
                   headers={"Authorization": f"Bearer {served_tiny.key}"}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert param in r.json()["error"]["message"] or "token id" in r.json()["error"]["message"]
