"""Benchmark: batched generation (`tuneloop.infer.generate`) vs one prompt at a time.

Prints generated tokens/s for `generate(..., batch_size=B)` (left padding, KV cache, prompts
sorted by length) and for the reference measured in the same run: a plain `model.generate` call
per prompt (batch 1, KV cache) — how generation is usually written — and the ratio. Greedy, so
both produce the same texts (checked). With --conversion it also times the embedded model's first
load (GGUF → cached safetensors, into a temporary cache) against a cached load.

    .venv/bin/python benchmarks/generate_throughput.py [--model smollm2-135m-instruct]
        [--prompts 16] [--batch-size 8] [--max-new-tokens 64] [--threads N] [--conversion]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

QUESTIONS = [
    "What is 2+2?", "Name three colours.", "Write a haiku about the sea.",
    "Explain what a neural network is in two sentences.", "What is the capital of France?",
    "Give me a synonym for happy.", "Summarise the plot of Romeo and Juliet.",
    "How do I boil an egg?", "List the planets of the solar system.",
    "Translate 'good morning' to Spanish.", "Why is the sky blue?",
    "Suggest a name for a pet goldfish.",
]


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--conversion", action="store_true",
                    help="also time the embedded model's first (converting) load")
    args = ap.parse_args()

    import torch

    from tuneloop.infer.generate import generate, load_for_generation
    from tuneloop.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    if args.conversion:
        with tempfile.TemporaryDirectory() as cache:
            old = os.environ.get("TUNELOOP_CACHE")
            os.environ["TUNELOOP_CACHE"] = cache
            t0 = time.perf_counter()
            load_model("smollm2-135m-instruct")
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            load_model("smollm2-135m-instruct")
            cached = time.perf_counter() - t0
            if old is None:
                del os.environ["TUNELOOP_CACHE"]
            else:
                os.environ["TUNELOOP_CACHE"] = old
        print(f"embedded model: first load (GGUF → safetensors) {first:.1f} s, "
              f"cached load {cached:.2f} s ({first / cached:.0f}x)")

    model, tok, renderer = load_for_generation(args.model)
    prompts = [[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
               for i in range(args.prompts)]

    t0 = time.perf_counter()
    gens = generate(model, tok, renderer, prompts, max_new_tokens=args.max_new_tokens,
                    batch_size=args.batch_size, progress=False)
    batched_s = time.perf_counter() - t0
    batched_tokens = sum(g.n_tokens for g in gens)

    # Reference: one plain model.generate per prompt.
    ref_tokens, ref_texts = 0, []
    stop = renderer.stop_token_ids
    t0 = time.perf_counter()
    for messages in prompts:
        ids = torch.tensor([renderer.prompt_ids(messages)])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=args.max_new_tokens, do_sample=False,
                                 eos_token_id=stop, pad_token_id=tok.pad_token_id)
        new = out[0, ids.shape[1]:].tolist()
        ref_tokens += len(new)
        cut = next((k for k, t in enumerate(new) if t in stop), len(new))
        ref_texts.append(tok.decode(new[:cut], skip_special_tokens=True))
    ref_s = time.perf_counter() - t0
    same = sum(g.text == r for g, r in zip(gens, ref_texts))

    b_rate, r_rate = batched_tokens / batched_s, ref_tokens / ref_s
    print(f"prompts {args.prompts}, max_new_tokens {args.max_new_tokens}, greedy")
    print(f"batched (batch {args.batch_size}): {batched_tokens} tokens in {batched_s:.1f} s "
          f"= {b_rate:.1f} tokens/s")
    print(f"reference (one at a time): {ref_tokens} tokens in {ref_s:.1f} s "
          f"= {r_rate:.1f} tokens/s")
    print(f"ratio batched/reference: {b_rate / r_rate:.2f}x; identical texts: "
          f"{same}/{len(prompts)}")


if __name__ == "__main__":
    main()
