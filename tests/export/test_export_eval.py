"""Evaluating the export: GGUF files and export directories are model references, so `eval suite`
and `eval compare` run on what users will deploy, and an F16 export answers the suite exactly like
the run it came from."""

from __future__ import annotations

import json

from tuneloop.cli import main


def _suite(path):
    path.write_text(json.dumps({
        "name": "export-suite", "threshold": 0.5, "max_new_tokens": 8,
        "cases": [
            {"id": "words", "prompt": "Describe item 3.", "checks": [{"max-words": 500}]},
            {"id": "france", "prompt": "What is the capital of France?",
             "checks": [{"python": "len(output) >= 0"}]},
            {"id": "never", "prompt": "List three colours.", "checks": [{"equals": "\u2603"}]},
        ],
    }), encoding="utf-8")
    return path


def _cases(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_gguf_refs_resolve(lora_run, tmp_path, capsys):
    """A .gguf file and an export directory resolve to kind 'gguf' with the chat template and the
    run's base model; a directory with two GGUFs asks which one."""
    from tuneloop.models import resolve_model_ref

    out = tmp_path / "g"
    assert main(["export", str(lora_run), "--format", "gguf", "--out", str(out),
                 "--no-progress"]) == 0
    for ref in (out, out / "model-f16.gguf"):
        r = resolve_model_ref(str(ref))
        assert r.kind == "gguf" and r.metadata["gguf_file"] == "model-f16.gguf"
        assert r.template == "chat" and r.adapter is None
        assert r.base_ref == json.loads((lora_run / "model" / "tuneloop_model.json").read_text())[
            "base_model"]
    (out / "copy.gguf").write_bytes((out / "model-f16.gguf").read_bytes())
    assert main(["eval", "suite", str(_suite(tmp_path / "s.yaml")), "--model", str(out)]) == 1
    err = capsys.readouterr().err
    assert "holds 2 GGUF files" in err and "fix:" in err


def test_eval_suite_on_exports_matches_the_run(lora_run, tmp_path):
    """`eval suite` with the run, its merged HF export, its GGUF export dir and its GGUF file as
    --model: every F16/fp32 variant gives the run's outputs and pass/fail, case for case."""
    suite = _suite(tmp_path / "suite.yaml")
    hf, gg = tmp_path / "hf", tmp_path / "gguf"
    assert main(["export", str(lora_run), "--format", "hf", "--out", str(hf), "--no-progress"]) == 0
    assert main(["export", str(lora_run), "--format", "gguf", "--out", str(gg),
                 "--no-progress"]) == 0
    out = tmp_path / "evals"
    refs = [str(lora_run), str(hf), str(gg), str(gg / "model-f16.gguf")]
    args = ["eval", "suite", str(suite), "--out", str(out), "--batch-size", "1"]
    for ref in refs:
        args += ["--model", ref]
    assert main(args) == 0
    variants = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(variants) == 4
    results = [_cases(out / v / "cases.jsonl") for v in variants]
    first = results[0]
    assert [c["passed"] for c in first] == [True, True, False]
    for other in results[1:]:
        assert [(c["id"], c["output"], c["passed"]) for c in other] == [
            (c["id"], c["output"], c["passed"]) for c in first]


def test_eval_compare_with_exported_tuned(lora_run, tiny_model_dir, tmp_path):
    """`eval compare --tuned EXPORT` finds the base model from the GGUF's own metadata."""
    out_export = tmp_path / "exp"
    assert main(["export", str(lora_run), "--format", "gguf", "--out", str(out_export),
                 "--no-progress"]) == 0
    out = tmp_path / "cmp"
    assert main(["eval", "compare", "--tuned", str(out_export), "--suite",
                 str(_suite(tmp_path / "s.yaml")), "--out", str(out)]) == 0
    variants = json.loads((out / "compare.json").read_text())["variants"]
    assert variants["base"]["model_ref"] == str(tiny_model_dir)
    assert variants["tuned"]["model_ref"] == str(out_export)
