"""One iterate round on a finished demo's round 1, with a given recipe (docs/iterate.md's table).

    python benchmarks/round_recipes.py DEMO_WORKDIR NAME RECIPE REPLAY QUESTIONS PROTECT [--set K=V ...]

DEMO_WORKDIR is a finished `tuneloop demo --workdir DIR` (its run/ is round 1; its
evals/fine-tuned/ round 1's result). RECIPE is continue or retrain; REPLAY a ratio of new rows,
or `all`; QUESTIONS rows per failed fact; PROTECT rows per passing fact. The --set overrides
apply to round 2's training (round 1's config is the demo's). The round lands in
DEMO_WORKDIR/recipes/NAME (a loop of its own in the index); the verdict is printed.
Every round starts from the same round 1, so rows of this table compare recipes only.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rich.console import Console

from tuneloop.demo import DOCUMENTS
from tuneloop.iterate import run_round, verdict_lines
from tuneloop.synth.docs import DocsOptions


def main(argv: list[str]) -> int:
    """Run the round and print its verdict and time."""
    if len(argv) < 6:
        print(__doc__)
        return 2
    workdir, name, recipe, replay, questions, protect = argv[:6]
    extra = [a for a in argv[6:] if a != "--set"]
    d = Path(workdir).resolve()
    split = d / "split"
    overrides = [f"data.train=[{json.dumps(str(split / 'train.jsonl'))}]",
                 f"data.eval=[{json.dumps(str(split / 'test.jsonl'))}]",
                 'model="smollm2-135m-instruct"', "logging.progress=false"]
    start = time.perf_counter()
    res = run_round(d / "evals" / "fine-tuned", suite=d / "data" / "suite.yaml",
                    config=d / "data" / "demo.yaml", generator="extractive",
                    loop=d / "recipes" / name, documents=[d / "data" / x for x in DOCUMENTS],
                    overrides=overrides, run_dir=d / "run", progress=False, recipe=recipe,
                    replay=None if replay == "all" else float(replay), protect=int(protect),
                    options=DocsOptions(chunk_words=120, overlap=20, questions=int(questions),
                                        progress=False),
                    train_overrides=extra, console=Console(width=120))
    for line in verdict_lines(res):
        print(line)
    print(f"{name}: {res.pass_rate_before:.3f} -> {res.pass_rate_after:.3f}, "
          f"{len(res.flipped_to_pass)} fixed {len(res.flipped_to_fail)} broken, {res.new_rows} "
          f"new rows, {res.replayed_rows} replayed, {time.perf_counter() - start:.0f} s")
    print("broken:", ", ".join(res.flipped_to_fail) or "-")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
