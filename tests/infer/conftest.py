"""A tiny model overfit in-process to answer a few questions and then stop (for generation tests)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from infer_qa import QA


@pytest.fixture(scope="session")
def trained_tiny_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model trained (assistant-only loss, EOT in labels) until it answers QA exactly."""
    import torch

    from tuneloop.data.records import Record
    from tuneloop.data.render import Renderer
    from tuneloop.models import load_model

    out = tmp_path_factory.mktemp("trained") / "model"
    shutil.copytree(tiny_model_dir, out)
    model, tok = load_model(out, trainable=True)
    renderer = Renderer(tok)
    examples = [renderer.render(Record.chat(("user", q), ("assistant", a))).example for q, a in QA]
    width = max(len(ex.input_ids) for ex in examples)
    pad = tok.pad_token_id
    ids = torch.tensor([ex.input_ids + [pad] * (width - len(ex.input_ids)) for ex in examples])
    labels = torch.tensor([ex.labels + [-100] * (width - len(ex.labels)) for ex in examples])
    mask = (torch.arange(width)[None, :] < torch.tensor([len(e.input_ids) for e in examples])[:, None])
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 2-core box shared by many processes: 1 thread is far faster
    try:
        for _step in range(300):
            loss = model(input_ids=ids, attention_mask=mask.long(), labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            if loss.item() < 0.02:
                break
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(out)
    return out


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run these tests on one torch thread: on a 2-core box shared by many processes, two
    spinning OpenMP threads are many times slower than one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained(trained_tiny_dir):
    """(model, tokenizer, renderer) for the trained tiny model."""
    from tuneloop.data.render import Renderer
    from tuneloop.models import load_model

    model, tok = load_model(trained_tiny_dir)
    return model, tok, Renderer(tok)
