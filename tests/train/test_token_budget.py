"""training.max_tokens_per_batch: the loop's packed micro-batches never exceed the token budget."""

from __future__ import annotations

from tuneloop.train import objectives, train
from tuneloop.train.config import load_config
from tuneloop.train.objectives.sft import SFTObjective


def test_loop_micro_batches_respect_the_token_budget(make_config, tmp_path, monkeypatch):
    """Every micro-batch the loop collates holds <= max_tokens_per_batch tokens, or is a single
    example longer than the cap (never cut, never dropped); without the cap batches are larger."""
    seen: dict[int | None, list[tuple[int, int]]] = {}

    def counting(cap):
        class Counting(SFTObjective):
            def collate(self, examples):
                batch = super().collate(examples)
                seen.setdefault(cap, []).append((len(examples), batch.n_positions))
                return batch
        return Counting

    for cap in (None, 48):
        monkeypatch.setitem(objectives.OBJECTIVES, "sft", lambda config, c=cap: counting(c)())
        cfg = load_config(make_config(f"c{cap}.yaml", training={
            "max_steps": 4, "batch_size": 8, "max_tokens_per_batch": cap}))
        train(cfg, output_dir=tmp_path / f"run{cap}", progress=False)
    capped, free = seen[48], seen[None]
    assert all(n <= 48 or k == 1 for k, n in capped), capped
    assert max(n for _, n in free) > 48  # the cap really changed the batches
    assert max(k for k, _ in capped) < max(k for k, _ in free)
