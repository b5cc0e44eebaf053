"""The in-process backend on the tiny model dir, and the judge answering through it."""

from __future__ import annotations

from tuneloop.backends import GenParams, make_generator
from tuneloop.backends.local import LocalGenerator
from tuneloop.eval.judge import Question, run_judge


def test_local_backend_matches_direct_generate_and_feeds_the_judge(tiny_model_dir, tmp_path):
    from tuneloop.data.render import Renderer
    from tuneloop.infer.generate import generate
    from tuneloop.models import load_model

    gen = make_generator(str(tiny_model_dir))
    assert isinstance(gen, LocalGenerator) and gen.name == f"local:{tiny_model_dir}"
    prompts = [[{"role": "user", "content": "hi"}],
               [{"role": "user", "content": "What is the capital of France?"}]]
    params = GenParams(max_tokens=6)
    out = gen.generate(prompts, params)
    model, tok = load_model(str(tiny_model_dir))
    direct = generate(model, tok, Renderer(tok), prompts, max_new_tokens=6, progress=False)
    assert out == [g.text for g in direct]

    class Recorded:
        name = "recorded-judge"

        def generate(self, ps, p):
            return ["Rating: [[6]]" for _ in ps]

    run = run_judge([Question("q", ["hi", "more"])], [str(tiny_model_dir)], Recorded(),
                    generators={str(tiny_model_dir): gen}, out_dir=tmp_path / "o",
                    answer_params=GenParams(max_tokens=4), show_progress=False)
    [r] = run.summary["results"]
    assert (r["mean"], r["n"], r["unparseable"]) == (6.0, 1, 0)
    assert (tmp_path / "o" / "judgments.jsonl").exists()
