"""Demo test fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tiny model's ops are microseconds long; on the shared 2-core machine a second torch
    thread only adds synchronisation stalls (measured: a quick demo took 300 s with 2 threads under
    load, 30 s with 1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
