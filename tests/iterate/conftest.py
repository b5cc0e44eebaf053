"""Iterate tests reuse the synth tests' fake OpenAI server (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "synth"))
