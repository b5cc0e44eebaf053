"""The Decoder's log-probabilities (the one decode loop that serve and generate share): equal to a
full forward pass by hand, with and without the shared-prefix cache, cut with the stop string."""

from __future__ import annotations

import math

import pytest

from tuneloop.infer.decode import Decoder, Row
from tuneloop.infer.params import GenParams


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from tuneloop.models import load_model

    model, tokenizer = load_model(str(tiny_model_dir))
    return model.eval(), tokenizer


def _by_hand(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().log_softmax(-1)


def test_generated_and_prompt_logprobs_equal_a_full_forward(tiny):
    """Rows sharing a long prefix (cached once) and an echo row: every logprob as by hand."""
    model, tok = tiny
    system = tok.encode("You are a helpful assistant. " * 8)  # > 32 tokens: shared prefix
    prompts = [system + tok.encode(q) for q in ("What is the capital", "List three colours")]
    decoder = Decoder(model, tok, [tok.eos_token_id])
    rows = [Row(p, GenParams(max_tokens=5), logprobs=3) for p in prompts]
    decoder.decode(rows)
    assert decoder.prefix_tokens_reused > 0  # the shared-prefix path was taken
    echo = Row(prompts[0], GenParams(max_tokens=5), logprobs=2, echo=True)
    decoder.decode([echo])
    for row in [*rows, echo]:
        full = row.prompt_ids + row.ids
        logp = _by_hand(model, full)
        assert len(row.token_logprobs) == len(row.ids)
        for k, e in enumerate(row.token_logprobs):
            t = len(row.prompt_ids) + k
            assert e.id == full[t]
            assert math.isclose(e.logprob, logp[t - 1, full[t]].item(), abs_tol=1e-4)
            top = logp[t - 1].topk(row.logprobs)
            assert [i for i, _ in e.top] == top.indices.tolist()
    assert echo.ids == rows[0].ids  # greedy: echo (no prefix cache) generates the same text
    assert echo.prompt_logprobs[0] is None
    logp = _by_hand(model, echo.prompt_ids)
    for t in range(1, len(echo.prompt_ids)):
        e = echo.prompt_logprobs[t]
        assert math.isclose(e.logprob, logp[t - 1, echo.prompt_ids[t]].item(), abs_tol=1e-4)


def test_prompt_only_rows_generate_nothing(tiny):
    model, tok = tiny
    decoder = Decoder(model, tok, [tok.eos_token_id])
    score = Row(tok.encode("The quick brown fox"), GenParams(max_tokens=1), logprobs=0,
                echo=True, generate=False)
    other = Row(tok.encode("The quick brown fox"), GenParams(max_tokens=3))
    decoder.decode([score, other])
    assert score.ids == [] and score.n_tokens == 0 and score.finish == "length"
    assert len(score.prompt_logprobs) == len(score.prompt_ids)
    assert other.n_tokens >= 1


def test_stop_string_cuts_the_logprobs_with_the_text(tiny):
    """Tokens after a stop string are not in the text, nor in the visible logprobs."""
    model, tok = tiny
    decoder = Decoder(model, tok, [tok.eos_token_id])
    free = Row(tok.encode("Write a short poem"), GenParams(max_tokens=12), logprobs=1)
    decoder.decode([free])
    text = free.text
    assert len(text) > 4
    stop = text[len(text) // 2:len(text) // 2 + 2]
    cut = Row(tok.encode("Write a short poem"), GenParams(max_tokens=12, stop=(stop,)),
              logprobs=1)
    decoder.decode([cut])
    assert cut.text == text[:text.index(stop)]
    visible = cut.visible_logprobs()
    shown = tok.decode([e.id for e in visible])
    assert shown.startswith(cut.text) and len(visible) < len(free.token_logprobs)
