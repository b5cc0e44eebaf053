"""Batched generation: training template, left padding, KV cache, stops at end-of-turn."""

from __future__ import annotations

import pytest
import torch
from infer_qa import QA

from tuneloop.errors import UsageError
from tuneloop.infer.generate import Generation, generate, stream_generate


def _prompts(questions):
    return [[{"role": "user", "content": q}] for q in questions]


def test_trained_model_stops_at_end_of_turn(trained):
    """R14: a model trained with <|im_end|> in its labels answers and stops ("stop", not "length")."""
    model, tok, renderer = trained
    gens = generate(model, tok, renderer, _prompts(q for q, _ in QA), max_new_tokens=24,
                    progress=False)
    assert [g.text for g in gens] == [a for _, a in QA]
    assert all(g.finish_reason == "stop" for g in gens)
    # n_tokens counts the answer's tokens plus the end-of-turn token.
    assert [g.n_tokens for g in gens] == [
        len(tok(a, add_special_tokens=False).input_ids) + 1 for _, a in QA]


def test_batched_equals_one_at_a_time(tiny_model_dir):
    """Left padding + attention mask: batched greedy == unbatched greedy, order restored (fp32)."""
    from tuneloop.data.render import Renderer
    from tuneloop.models import load_model

    model, tok = load_model(tiny_model_dir)
    torch.manual_seed(3)
    with torch.no_grad():  # random init at this size only emits "\n"; widen it for varied text
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.3)
    renderer = Renderer(tok)
    questions = ["hi", "What is the capital of France? Tell me about it.", "List three colours",
                 "The quick brown fox jumps over the lazy dog.", "Paris"]
    batched = generate(model, tok, renderer, _prompts(questions), max_new_tokens=8,
                       batch_size=3, progress=False)
    single = [generate(model, tok, renderer, _prompts([q]), max_new_tokens=8, batch_size=1,
                       progress=False)[0] for q in questions]
    assert batched == single
    assert len({g.text for g in batched}) == len(questions)  # really different outputs


def test_length_finish_and_stop_strings(trained):
    """max_new_tokens ends with "length"; a stop string cuts the text and ends with "stop"."""
    model, tok, renderer = trained
    prompt = _prompts(["List three colours."])
    short = generate(model, tok, renderer, prompt, max_new_tokens=2, progress=False)[0]
    assert short.finish_reason == "length" and short.n_tokens == 2
    assert "red, green, blue".startswith(short.text)
    cut = generate(model, tok, renderer, prompt, max_new_tokens=24, stop=["green"],
                   progress=False)[0]
    assert cut == Generation("red, ", cut.n_tokens, "stop") and cut.n_tokens < 9


def test_sampling_is_seeded(trained):
    """Sampling with a seed is reproducible; temperature > 0 really samples."""
    model, tok, renderer = trained
    prompts = _prompts(["hi", "Paris"] * 2)
    kw = {"max_new_tokens": 6, "temperature": 2.0, "top_p": 1.0, "progress": False}
    a = generate(model, tok, renderer, prompts, seed=7, **kw)
    b = generate(model, tok, renderer, prompts, seed=7, **kw)
    c = generate(model, tok, renderer, prompts, seed=8, **kw)
    assert a == b and a != c


def test_stream_matches_generate(trained):
    """Streaming yields pieces that join to the same text, with finish reason and token count."""
    model, tok, renderer = trained
    messages = _prompts(["hi"])[0]
    stream = stream_generate(model, tok, renderer, messages, max_new_tokens=24)
    pieces = list(stream)
    assert len(pieces) > 1 and "".join(pieces) == "The sea is wide and blue and deep."
    assert stream.finish_reason == "stop" and stream.n_tokens == 13
    stream = stream_generate(model, tok, renderer, messages, max_new_tokens=24, stop=["blue"])
    assert "".join(stream) == "The sea is wide and " and stream.finish_reason == "stop"


def test_bad_parameters(trained):
    """Out-of-range parameters → UsageError naming the value."""
    model, tok, renderer = trained
    for kw, msg in [({"max_new_tokens": 0}, "max_new_tokens"), ({"temperature": -1}, "temperature"),
                    ({"top_p": 0}, "top_p"), ({"batch_size": 0}, "batch_size")]:
        with pytest.raises(UsageError, match=msg):
            generate(model, tok, renderer, _prompts(["hi"]), progress=False, **kw)
    assert generate(model, tok, renderer, [], progress=False) == []
    with pytest.raises(UsageError, match="prompt 2 is .* context is 1024"):
        generate(model, tok, renderer, _prompts(["hi", "blue sea " * 600]), progress=False)


@pytest.mark.integration
def test_embedded_model_answers_and_stops():
    """R14 on the real model: a short answer to "What is 2+2?" ends at <|im_end|> ("stop")."""
    from tuneloop.data.render import Renderer
    from tuneloop.models import EMBEDDED_ALIAS, load_model

    model, tok = load_model(EMBEDDED_ALIAS)
    gen = generate(model, tok, Renderer(tok), _prompts(["What is 2+2?"]), max_new_tokens=48,
                   progress=False)[0]
    assert gen.finish_reason == "stop" and "4" in gen.text and gen.n_tokens < 48
