"""What the conftests of tests that train the tiny model share: one torch thread, config files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP threads fighting for cores made
    the tiny model ~4x slower; it also keeps numerics identical run to run and between a
    subprocess and the test process. A conftest imports it to apply it to its folder."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_config(path: Path, defaults: dict[str, Any], sections: dict[str, Any]) -> Path:
    """Write `defaults` as a YAML config at `path`, with each keyword section merged in: a dict
    updates the default section of that name key by key, anything else replaces it."""
    cfg = dict(defaults)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path
