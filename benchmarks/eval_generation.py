"""Benchmark: batched suite generation vs one case at a time, on the embedded model.

Runs `run_suite_on_model` on a suite (default: examples/suites/example.yaml, its cases repeated
to --cases) with --batch-size B and, as the reference measured in the same run, with batch size
1 (one generate call per case, KV cache, no padding). Greedy decoding, so both must produce the
same outputs and the same pass/fail per case (checked). Each side runs --repeats times,
alternating, and the fastest run of each is compared (the machine is shared; best-of filters
other processes' noise). Prints seconds, generated tokens/s and the speed-up.

Then the shared-system-prompt case (issue 11): the same questions behind one long system prompt
(about --system-tokens tokens, like the demo's baselines), generated batched with the shared-prefix
KV cache (the default: the prefix is computed once) and, as the reference in the same run, with it
off (today's plain batched path). Prints both times, the ratio, and whether the greedy outputs are
identical (they must be). --system-tokens 0 skips it.

    .venv/bin/python benchmarks/eval_generation.py [--model smollm2-135m-instruct]
        [--suite examples/suites/example.yaml] [--cases 16] [--batch-size 16]
        [--max-new-tokens 64] [--repeats 2] [--threads N] [--system-tokens 700]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_suite(path: Path, n_cases: int, max_new_tokens: int):
    """The suite's cases repeated (ids made unique) up to n_cases, one length budget for all."""
    from tuneloop.eval.suite import load_suite, suite_from_dict

    base = load_suite(path)
    cases = []
    for i in range(n_cases):
        case = base.cases[i % len(base.cases)]
        data = case.model_dump(exclude={"checks", "max_new_tokens"}, exclude_none=True)
        data["id"] = f"{case.id}-{i}"
        data["checks"] = [{c.name: c.value} for c in case.checks]
        cases.append(data)
    return suite_from_dict({"name": base.name, "threshold": base.threshold,
                            "max_new_tokens": max_new_tokens, "cases": cases})


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--suite", type=Path, default=ROOT / "examples" / "suites" / "example.yaml")
    ap.add_argument("--cases", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--system-tokens", type=int, default=700,
                    help="length of the shared system prompt case (0: skip it)")
    args = ap.parse_args()

    import torch

    from tuneloop.eval.suite_run import run_suite_on_model
    from tuneloop.models import load_model, renderer_for

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, torch threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    suite = build_suite(args.suite, args.cases, args.max_new_tokens)
    model, tokenizer = load_model(args.model)
    renderer = renderer_for(args.model, tokenizer)

    def timed(batch_size: int):
        t0 = time.perf_counter()
        result = run_suite_on_model(model, tokenizer, renderer, suite, batch_size=batch_size)
        return time.perf_counter() - t0, result

    timed(args.batch_size)  # warm-up: first-call allocations and kernel selection
    best: dict[int, tuple[float, object]] = {}
    for _ in range(args.repeats):
        for bs in (1, args.batch_size):
            seconds, result = timed(bs)
            if bs not in best or seconds < best[bs][0]:
                best[bs] = (seconds, result)
    (one_s, one), (many_s, many) = best[1], best[args.batch_size]
    same_outputs = [c.output for c in one.cases] == [c.output for c in many.cases]
    same_verdicts = [c.passed for c in one.cases] == [c.passed for c in many.cases]
    tokens = sum(c.n_tokens for c in many.cases)
    print(f"suite {suite.name}: {len(suite.cases)} cases, max_new_tokens {args.max_new_tokens}, "
          f"{tokens} tokens generated, pass rate {many.pass_rate:.1%}")
    print(f"one at a time (batch 1): {one_s:.1f} s, {tokens / one_s:.1f} tokens/s")
    print(f"batched (batch {args.batch_size}):     {many_s:.1f} s, {tokens / many_s:.1f} tokens/s")
    print(f"speed-up: {one_s / many_s:.2f}x (target >= 3x); same outputs: {same_outputs}; "
          f"same pass/fail: {same_verdicts}")
    if not (same_outputs and same_verdicts):
        raise SystemExit("batched and one-at-a-time outputs differ")
    if args.system_tokens > 0:
        shared_system_case(model, tokenizer, renderer, suite, args)


SYSTEM_PARAGRAPH = (
    "You are the help desk assistant of a regional library. Answer the question in one or two "
    "plain sentences. Use only facts you are sure of, say so when you do not know, do not make "
    "up opening hours, fees or titles, and keep a friendly, neutral tone. ")


def shared_system_prompt(tokenizer, n_tokens: int) -> str:
    """The paragraph repeated until it is about n_tokens tokens long."""
    per = len(tokenizer(SYSTEM_PARAGRAPH, add_special_tokens=False).input_ids)
    return SYSTEM_PARAGRAPH * max(1, round(n_tokens / per))


def shared_system_case(model, tokenizer, renderer, suite, args) -> None:
    """Batched generation behind one long system prompt: shared-prefix cache on vs off."""
    from tuneloop.infer.generate import generate

    system = shared_system_prompt(tokenizer, args.system_tokens)
    prompts = [[{"role": "system", "content": system}, {"role": "user", "content": c.prompt or c.id}]
               for c in suite.cases]
    n_system = len(tokenizer(system, add_special_tokens=False).input_ids)

    def timed(share: bool):
        t0 = time.perf_counter()
        gens = generate(model, tokenizer, renderer, prompts, max_new_tokens=args.max_new_tokens,
                        batch_size=args.batch_size, share_prefix=share, progress=False)
        return time.perf_counter() - t0, gens

    best: dict[bool, tuple[float, list]] = {}
    for _ in range(args.repeats):
        for share in (False, True):
            seconds, gens = timed(share)
            if share not in best or seconds < best[share][0]:
                best[share] = (seconds, gens)
    (plain_s, plain), (cached_s, cached) = best[False], best[True]
    same = [(g.text, g.finish_reason) for g in plain] == [(g.text, g.finish_reason)
                                                          for g in cached]
    tokens = sum(g.n_tokens for g in cached)
    print(f"shared system prompt ({n_system} tokens), {len(prompts)} questions, batch "
          f"{args.batch_size}, {tokens} tokens generated")
    print(f"plain batched:         {plain_s:.1f} s, {tokens / plain_s:.1f} tokens/s")
    print(f"shared-prefix cache:   {cached_s:.1f} s, {tokens / cached_s:.1f} tokens/s")
    print(f"speed-up: {plain_s / cached_s:.2f}x; identical outputs: {same}")
    if not same:
        raise SystemExit("shared-prefix and plain batched outputs differ")


if __name__ == "__main__":
    main()
