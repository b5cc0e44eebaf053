"""Synth with an in-process model (the tiny random model): batched local generation, cached."""

from __future__ import annotations

import json

from test_synth_self_instruct import SEEDS

from tuneloop.synth.self_instruct import SelfInstructOptions, run_self_instruct


def test_local_model_generator_batches_and_caches(tiny_model_dir, tmp_path):
    """A model-dir spec runs in-process; its answers land in the run's cache, so a rerun loads
    no model and sends nothing (random text is rejected by the filters, counted by reason)."""
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    opts = SelfInstructOptions(target=1, batch=3, max_tokens=24, instance_max_tokens=16,
                               max_requests=3, progress=True)
    first = run_self_instruct(seeds, str(tiny_model_dir), tmp_path / "o", opts)
    assert first["requests"]["by_kind"]["instructions"] == 3
    assert first["requests"]["sent_this_invocation"] >= 1  # duplicates in a batch sent once
    assert first["stopped"] == "budget"
    assert (tmp_path / "o" / "requests.sqlite").exists()
    again = run_self_instruct(seeds, str(tiny_model_dir), tmp_path / "o", opts)
    assert again["requests"]["sent_this_invocation"] == 0
    assert again["rejected"] == first["rejected"] and again["rows"] == first["rows"]
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["generator"] == f"local:{tiny_model_dir}"
