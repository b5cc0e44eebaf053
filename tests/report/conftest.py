"""Fixtures for the report tests (writers live in report_fakes.py, a uniquely named module)."""

from __future__ import annotations

import pytest
from report_fakes import FakeWorkspace, write_compare, write_run


@pytest.fixture
def fake_workspace(tmp_path) -> FakeWorkspace:
    """Two run dirs (LoRA and full) + one compare dir under tmp_path."""
    runs = tmp_path / "runs"
    return FakeWorkspace(
        run_a=write_run(runs, "lora-r8", method="lora", lr=2e-4, floor=1.2),
        run_b=write_run(runs, "full-ft", method="full", lr=5e-5, floor=1.0,
                        suite_rates=(0.25, 0.5)),
        compare=write_compare(tmp_path),
    )
