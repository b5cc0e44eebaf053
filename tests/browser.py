"""Debian's Chromium for the browser tests (playwright drives it; never `playwright install`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str:
    """The browser's path; a missing browser fails the test (browser tests must run, not skip)."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    found = shutil.which("chromium")
    if found:
        return found
    pytest.fail(f"{CHROMIUM} not found: run `apt-get install -y chromium` (the Makefile's test "
                "target does this); browser tests must run, not skip")
