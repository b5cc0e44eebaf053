"""One held-out pass for every objective: shard batches over processes, sum, reduce.

Each objective says only what a batch adds to the totals (`sums_of`); this module owns what they
all need to get right the same way: the unwrapped model (never the DDP wrapper: its forward syncs
buffers collectively, and ranks here run different numbers of batches, which would deadlock),
eval mode restored afterwards, no grad under the accelerator's autocast, one progress task, and
a single all-reduce of the sums.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from tuneloop.progress import optional_progress


def sharded_eval_sums(model: Any, examples: list[Any], *, batch_size: int, accelerator: Any,
                      progress: Any, width: int,
                      sums_of: Callable[[Any, list[Any], Any], Any]) -> list[float]:
    """Sum `sums_of(model, batch, device)` (a float64 tensor of `width` values) over this
    process's share of the batches of `examples`, reduced over all processes.

    progress: False, True (own bar), or a live rich Progress to add an eval task to.
    """
    import torch

    if accelerator is not None:
        model = accelerator.unwrap_model(model)
    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    totals = torch.zeros(width, dtype=torch.float64, device=device)
    chunks = [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]
    mine = chunks[rank::world]
    shared = progress if not isinstance(progress, bool) else None
    bar = nullcontext(shared) if shared is not None else optional_progress(
        bool(progress) and rank == 0, "eval")
    autocast = accelerator.autocast() if accelerator is not None else nullcontext()
    try:
        with torch.no_grad(), autocast, bar as prog:
            task = prog.add_task("eval", total=len(mine), info="") if prog else None
            for chunk in mine:
                totals += sums_of(model, chunk, device)
                if prog:
                    prog.advance(task)
            if shared is not None and task is not None:
                shared.remove_task(task)
        if accelerator is not None and world > 1:
            totals = accelerator.reduce(totals, reduction="sum")
    finally:
        model.train(was_training)
    return totals.tolist()
