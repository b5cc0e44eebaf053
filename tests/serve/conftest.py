"""Fixtures: `tuneloop serve` on the tiny model as a subprocess, killed in teardown."""

from __future__ import annotations

import pytest
from servehelp import start_server, stop_server


@pytest.fixture(scope="session")
def served_tiny(tiny_model_dir, tmp_path_factory):
    """`tuneloop serve <tiny dir> --api-key test-key` on a free loopback port."""
    served = start_server(str(tiny_model_dir), tmp_path_factory.mktemp("serve"))
    yield served
    stop_server(served.proc)
