"""lm-evaluation-harness's `local-completions` client (its defaults: token-id prompts, logprobs +
echo for loglikelihood) against `tuneloop serve` of the embedded model: the loglikelihoods of a
multiple-choice task equal lm-eval's `hf` backend and `tuneloop eval mc` on the same items, and
a generation task's outputs are identical to the `hf` backend's (R20)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from lmeval_tasks import mc_task_yaml
from servehelp import start_server, stop_server

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mc" / "general.jsonl"
N_ITEMS = 8  # keeps the test short on 2 CPU cores
N_GEN = 4

GEN_TASK = """\
task: tl_serve_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{choices[answer]}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 12
  do_sample: false
metric_list:
  - metric: exact_match
"""


def _samples(out: dict, task: str) -> list[dict]:
    return sorted(out["samples"][task], key=lambda s: s["doc_id"])


@pytest.mark.integration
def test_local_completions_matches_hf_backend_and_eval_mc(tmp_path, monkeypatch):
    import lm_eval
    from lm_eval.tasks import TaskManager

    from tuneloop.eval.mc import lm_eval_model_args, load_mc_items, score_mc
    from tuneloop.models import load_model, resolve_model_ref

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    ref = "smollm2-135m-instruct"
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()[:N_ITEMS]
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    data = task_dir / "items.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (task_dir / "mc.yaml").write_text(mc_task_yaml("tl_serve_mc", data), encoding="utf-8")
    gen_data = task_dir / "gen.jsonl"
    gen_data.write_text("\n".join(lines[:N_GEN]) + "\n", encoding="utf-8")
    (task_dir / "gen.yaml").write_text(GEN_TASK.format(data=gen_data), encoding="utf-8")
    tasks = ["tl_serve_mc", "tl_serve_gen"]
    hf_dir = resolve_model_ref(ref).weights

    served = start_server(ref, tmp_path, key=None, timeout=600)
    try:
        api = lm_eval.simple_evaluate(
            model="local-completions",
            model_args=(f"model={served.model},base_url={served.url}/v1/completions,"
                        f"tokenizer={hf_dir},tokenizer_backend=huggingface,num_concurrent=1,"
                        "max_retries=1,max_length=2048"),
            tasks=tasks, task_manager=TaskManager(include_path=str(task_dir)),
            log_samples=True)
    finally:
        stop_server(served.proc)
    hf = lm_eval.simple_evaluate(
        model="hf", model_args=lm_eval_model_args(ref), tasks=tasks, device="cpu",
        batch_size=4, task_manager=TaskManager(include_path=str(task_dir)), log_samples=True)
    model, tokenizer = load_model(ref)
    ours = score_mc(model, tokenizer, load_mc_items(data), batch_size=4, progress=False)

    worst = 0.0
    api_mc, hf_mc = _samples(api, "tl_serve_mc"), _samples(hf, "tl_serve_mc")
    assert len(api_mc) == len(hf_mc) == len(ours.items) == N_ITEMS
    for a, h, row in zip(api_mc, hf_mc, ours.items, strict=True):
        served_ll = [r[0] for r in a["filtered_resps"]]
        hf_ll = [r[0] for r in h["filtered_resps"]]
        assert len(served_ll) == len(hf_ll) == len(row["loglikelihoods"]) >= 2
        for s, h_, t in zip(served_ll, hf_ll, row["loglikelihoods"], strict=True):
            worst = max(worst, abs(s - h_), abs(s - t))
            assert math.isclose(s, h_, abs_tol=1e-3), (a["doc_id"], s, h_)
            assert math.isclose(s, t, abs_tol=1e-3), (a["doc_id"], s, t)
    assert api["results"]["tl_serve_mc"]["acc,none"] == ours.acc
    gens_api = [s["resps"][0][0] for s in _samples(api, "tl_serve_gen")]
    gens_hf = [s["resps"][0][0] for s in _samples(hf, "tl_serve_gen")]
    assert gens_api == gens_hf
    assert any(g.strip() for g in gens_api)  # real text, not empty strings on both sides
    print(json.dumps({"max_abs_loglikelihood_diff": worst, "acc": ours.acc,
                      "generations": gens_api}))
