"""Regional torch.compile on CPU: does fusing each layer's MLP and RMSNorms pay for its compile?

    python benchmarks/cpu_compile.py [LAYERS] [MODEL_DIR]

A random-init model of the embedded model's shape (LAYERS decoder layers, default 6; the config
from MODEL_DIR or the embedded model) trains on the same four packed micro-batches (held-out-like
lengths, the shipped packed loss and per-document attention) eagerly and with the shipped
`setup.compile_regions` (each layer's MLP and RMSNorms, and the final norm; dynamic shapes: one
compile serves every packed length). Rounds alternate eager / compiled so the host's drift hits
both; the median of 4 rounds is printed, with the compile time of the first round.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from tuneloop.models import ensure_embedded_model
from tuneloop.train.collate import (
    IGNORE_INDEX,
    collate_packed,
    enable_packed_attention,
    packed_loss,
)
from tuneloop.train.setup import compile_regions

LENGTHS = [(300, 500, 224), (136, 700, 188), (1000, 24), (400, 400, 224)]  # tokens per document


class Doc:
    """A document: first half prompt (masked), second half trained."""

    def __init__(self, ids: list[int]):
        self.input_ids = ids
        self.labels = [IGNORE_INDEX] * (len(ids) // 2) + ids[len(ids) // 2:]


def build(config):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).train()
    enable_packed_attention(model)
    return model


def run(model, batches) -> float:
    start = time.perf_counter()
    for batch in batches:
        loss, _ = packed_loss(model, batch)
        loss.backward()
    return time.perf_counter() - start


def main() -> None:
    layers = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    source = sys.argv[2] if len(sys.argv) > 2 else ensure_embedded_model(progress=False)
    config = AutoConfig.from_pretrained(source)
    config.num_hidden_layers = layers
    g = torch.Generator().manual_seed(1)
    batches = [collate_packed([Doc(torch.randint(3, config.vocab_size - 1, (n,),
                                                 generator=g).tolist()) for n in lens])
               for lens in LENGTHS]
    eager, compiled = build(config), build(config)
    compile_regions(compiled)  # what training.compile: true does on a CPU
    print(f"compiled first round (compile included): {run(compiled, batches):.1f} s", flush=True)
    run(eager, batches[:1])  # warm the eager allocator too
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(4):
        times["eager"].append(run(eager, batches))
        times["compiled"].append(run(compiled, batches))
    for name, values in times.items():
        print(f"{name}: rounds {[round(v, 2) for v in values]} s, median "
              f"{statistics.median(values):.2f} s")
    ratio = statistics.median(times["eager"]) / statistics.median(times["compiled"])
    print(f"RATIO eager/compiled median = {ratio:.3f}x ({layers} layers)")


if __name__ == "__main__":
    main()
