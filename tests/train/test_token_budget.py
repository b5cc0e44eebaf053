"""training.max_tokens_per_batch: micro-batches stay under the budget; the optimisation does not change."""

from __future__ import annotations

import pytest
from runrows import train_rows_by_step

from tuneloop.train import objectives, train
from tuneloop.train.config import CPU_TOKEN_BUDGET, load_config, token_budget
from tuneloop.train.objectives.sft import SFTObjective


def test_a_budget_cuts_batches_into_micro_batches_that_accumulate_to_the_same_steps(
        make_config, tmp_path, monkeypatch):
    """Every micro-batch the loop collates holds <= the budget, or is one example longer than it
    (never cut, never dropped); the steps and their losses and gradient norms are those of the
    uncut batches (the budget changes memory, not the optimisation)."""
    seen: dict[int | None, list[tuple[int, int]]] = {}

    def counting(cap):
        class Counting(SFTObjective):
            def collate(self, examples):
                batch = super().collate(examples)
                seen.setdefault(cap, []).append((len(examples), batch.n_positions))
                return batch
        return Counting

    rows = {}
    for cap in (None, 48):
        monkeypatch.setitem(objectives.OBJECTIVES, "sft", lambda config, c=cap: counting(c)())
        cfg = load_config(make_config(f"c{cap}.yaml", training={
            "max_steps": 4, "batch_size": 8, "max_tokens_per_batch": cap}))
        train(cfg, output_dir=tmp_path / f"run{cap}", progress=False)
        rows[cap] = train_rows_by_step(tmp_path / f"run{cap}")
    capped, free = seen[48], seen[None]
    assert all(n <= 48 or k == 1 for k, n in capped), capped
    assert max(n for _, n in free) > 48  # the cap really cut the batches
    assert len(capped) > len(free)
    assert sorted(rows[48]) == sorted(rows[None]) == [1, 2, 3, 4]
    for step, row in rows[None].items():
        assert rows[48][step]["loss"] == pytest.approx(row["loss"], rel=1e-5)
        assert rows[48][step]["grad_norm"] == pytest.approx(row["grad_norm"], rel=1e-4)


def test_auto_budget_is_a_cap_on_a_cpu_and_none_on_a_gpu(make_config):
    cfg = load_config(make_config())
    assert cfg.training.max_tokens_per_batch == "auto"  # the default
    assert token_budget(cfg.training, "cpu") == CPU_TOKEN_BUDGET
    assert token_budget(cfg.training, "cuda") is None
    cfg.training.max_tokens_per_batch = 300
    assert token_budget(cfg.training, "cuda") == 300
    cfg.training.max_tokens_per_batch = None
    assert token_budget(cfg.training, "cpu") is None
