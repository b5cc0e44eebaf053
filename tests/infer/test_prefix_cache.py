"""Shared-prefix KV cache: prompts that start alike compute the prefix once, same greedy text."""

from __future__ import annotations

import pytest
import torch

from tuneloop.infer.decode import Decoder, Row
from tuneloop.infer.generate import generate
from tuneloop.infer.params import GenParams

SYSTEM = ("You are a careful assistant for a small bakery. Answer in one short sentence, name "
          "the bread when you can, and never invent prices or opening hours you were not given.")
QUESTIONS = ["hi", "What is sourdough?", "List three breads", "Do you sell rye bread today?",
             "Paris", "How long does a baguette keep?", "Why is my crust soft?"]


def _prompts(system, questions):
    return [[{"role": "system", "content": system}, {"role": "user", "content": q}]
            for q in questions]


@pytest.fixture(scope="module")
def varied(tiny_model_dir):
    """The tiny model with widened random weights, so its greedy text varies with the prompt."""
    from tuneloop.data.render import Renderer
    from tuneloop.models import load_model

    model, tok = load_model(tiny_model_dir)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.3)
    return model, tok, Renderer(tok)


def test_shared_prefix_gives_identical_greedy_outputs(varied):
    model, tok, renderer = varied
    prompts = _prompts(SYSTEM, QUESTIONS)
    kw = {"max_new_tokens": 10, "batch_size": 3, "progress": False}
    cached = generate(model, tok, renderer, prompts, share_prefix=True, **kw)
    plain = generate(model, tok, renderer, prompts, share_prefix=False, **kw)
    assert cached == plain
    assert len({g.text for g in plain}) > 3  # the outputs really depend on the question


def test_prefix_is_computed_once_and_reused_across_batches(varied):
    model, tok, renderer = varied
    ids = [renderer.prompt_ids(m) for m in _prompts(SYSTEM, QUESTIONS)]
    params = GenParams(max_tokens=4)
    shared = min(len(i) for i in ids)
    while any(i[:shared] != ids[0][:shared] for i in ids):
        shared -= 1
    assert shared >= 32

    decoder = Decoder(model, tok, renderer.stop_token_ids)
    first = decoder.decode([Row(i, params) for i in ids[:3]])
    reused_once = decoder.prefix_tokens_reused
    assert reused_once >= 2 * shared  # 3 rows, prefix computed for one
    second = decoder.decode([Row(i, params) for i in ids[3:]])
    # The next batch found the prefix already computed: all its rows reuse it.
    assert decoder.prefix_tokens_reused - reused_once >= len(ids[3:]) * shared
    plain = Decoder(model, tok, renderer.stop_token_ids, share_prefix=False)
    again = plain.decode([Row(i, params) for i in ids])
    assert [(r.text, r.n_tokens, r.finish) for r in first + second] == [
        (r.text, r.n_tokens, r.finish) for r in again]
    assert plain.prefix_tokens_reused == 0


def test_a_different_prefix_replaces_the_kept_one(varied):
    """A batch that shares less with the kept prefix crops it; an unrelated one recomputes."""
    model, tok, renderer = varied
    params = GenParams(max_tokens=3)
    decoder = Decoder(model, tok, renderer.stop_token_ids)
    plain = Decoder(model, tok, renderer.stop_token_ids, share_prefix=False)
    other = "A different system prompt about trains, timetables and platforms, kept long. " * 2
    for system in (SYSTEM, SYSTEM[:120] + " (shorter)", other, SYSTEM):
        ids = [renderer.prompt_ids(m) for m in _prompts(system, QUESTIONS[:3])]
        got = decoder.decode([Row(i, params) for i in ids])
        want = plain.decode([Row(i, params) for i in ids])
        assert [r.text for r in got] == [r.text for r in want], system


def test_n_copies_of_one_prompt_share_it(varied):
    """serve's n > 1 (and repeated prompts): one prompt, several rows, one prefill of it."""
    model, tok, renderer = varied
    ids = renderer.prompt_ids(_prompts(SYSTEM, ["hi"])[0])
    decoder = Decoder(model, tok, renderer.stop_token_ids)
    rows = decoder.decode([Row(ids, GenParams(max_tokens=5)) for _ in range(3)])
    assert decoder.prefix_tokens_reused >= 2 * (len(ids) - 1)
    assert len({r.text for r in rows}) == 1


@pytest.mark.integration
def test_embedded_model_shared_system_prompt_identical():
    """On SmolLM2: a shared system prompt computed once gives the same greedy answers."""
    from tuneloop.infer.generate import load_for_generation
    from tuneloop.models import EMBEDDED_ALIAS

    model, tok, renderer = load_for_generation(EMBEDDED_ALIAS)
    prompts = _prompts(SYSTEM * 2, QUESTIONS[1:5])
    kw = {"max_new_tokens": 24, "batch_size": 4, "progress": False}
    cached = generate(model, tok, renderer, prompts, share_prefix=True, **kw)
    plain = generate(model, tok, renderer, prompts, share_prefix=False, **kw)
    assert cached == plain
    assert all(g.text for g in cached)


def test_a_failed_batch_leaves_no_broken_prefix_behind(varied):
    """R25: an error while computing a prefix (a bad token id) does not poison later batches."""
    model, tok, renderer = varied
    params = GenParams(max_tokens=3)
    ids = [renderer.prompt_ids(m) for m in _prompts(SYSTEM, QUESTIONS[:2])]
    decoder = Decoder(model, tok, renderer.stop_token_ids)
    decoder.decode([Row(i, params) for i in ids])  # keeps SYSTEM's prefix
    bad = [i[:40] + [10**9] + i[40:] for i in ids]  # shares the start, then an impossible id
    with pytest.raises(IndexError):
        decoder.decode([Row(i, params) for i in bad])
    got = decoder.decode([Row(i, params) for i in ids])
    want = Decoder(model, tok, renderer.stop_token_ids, share_prefix=False).decode(
        [Row(i, params) for i in ids])
    assert [r.text for r in got] == [r.text for r in want]
