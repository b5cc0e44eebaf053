"""Fixtures: `tuneloop serve` on the tiny model as a subprocess, killed in teardown."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from servehelp import start_server, stop_server

# The in-thread uvicorn helper shared with the backend tests.
sys.path.insert(0, str(Path(__file__).parent.parent / "backends"))


@pytest.fixture(scope="session")
def served_tiny(tiny_model_dir, tmp_path_factory):
    """`tuneloop serve <tiny dir> --api-key test-key` on a free loopback port."""
    served = start_server(str(tiny_model_dir), tmp_path_factory.mktemp("serve"))
    yield served
    stop_server(served.proc)
