"""`tuneloop eval suite/compare/loss/mc` end to end on the tiny model (unit tier)."""

from __future__ import annotations

import json

import pytest

from tuneloop.cli import main


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Each test gets its own workspace (index + default eval dirs)."""
    monkeypatch.setenv("TUNELOOP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def write_suite(path, leaked_prompt="What is the capital of France?", threshold=0.5):
    path.write_text(json.dumps({
        "name": "cli-suite", "threshold": threshold, "max_new_tokens": 6,
        "cases": [
            {"id": "ok", "prompt": "What is the capital of France?",
             "checks": [{"max-words": 500}]},
            {"id": "leak", "prompt": leaked_prompt, "reference": "Because it is quick.",
             "checks": [{"python": "len(output) >= 0"}]},
            {"id": "never", "prompt": "List three colours.", "checks": [{"equals": "\u2603"}]},
        ],
    }), encoding="utf-8")  # JSON is YAML
    return path


def test_suite_cli_writes_jsonl_and_gates_on_threshold(tiny_model_dir, tuned_run_dir, tmp_path,
                                                       capsys):
    """Two models → one table and one cases.jsonl each; exit 0 at/above, 1 below threshold."""
    from tuneloop.index import list_evals

    suite = write_suite(tmp_path / "suite.yaml", threshold=0.7)
    out = tmp_path / "out"
    code = main(["eval", "suite", str(suite), "--model", str(tiny_model_dir),
                 "--model", str(tuned_run_dir), "--out", str(out), "--batch-size", "2"])
    captured = capsys.readouterr()
    assert code == 1  # 2 of 3 pass: 0.67 < 0.7
    assert "below its threshold" in captured.err
    for variant in ("tiny", "tuned-run"):
        rows = [json.loads(x) for x in (out / variant / "cases.jsonl").read_text().splitlines()]
        assert [r["id"] for r in rows] == ["ok", "leak", "never"]
        assert [r["passed"] for r in rows] == [True, True, False]
    assert "cli-suite" in captured.out and "FAIL" in captured.out
    rows = list_evals()
    assert [r["variant"] for r in rows] == ["tiny", "tuned-run"]
    assert rows[1]["run_dir"] is not None and rows[0]["run_dir"] is None


def test_suite_cli_passes_at_threshold(tiny_model_dir, tmp_path, capsys):
    """A suite that meets its threshold exits 0; --system-prompt lands in the prompts."""
    suite = write_suite(tmp_path / "suite.yaml", threshold=0.5)
    out = tmp_path / "out"
    code = main(["eval", "suite", str(suite), "--model", str(tiny_model_dir), "--out", str(out),
                 "--system-prompt", "Be brief."])
    assert code == 0, capsys.readouterr().err
    row = json.loads((out / "tiny+prompt" / "cases.jsonl").read_text().splitlines()[0])
    assert row["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert main(["eval", "suite", str(tmp_path / "missing.yaml"), "--model", "x"]) == 1
    assert "suite file not found" in capsys.readouterr().err


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


HELDOUT = [
    {"messages": [{"role": "user", "content": "Translate to French: good morning."},
                  {"role": "assistant", "content": "Bonjour."}]},
    {"messages": [{"role": "user", "content": "List three colours."},
                  {"role": "assistant", "content": "red, green, blue"},
                  {"role": "user", "content": "And the sea?"},
                  {"role": "assistant", "content": "The sea is wide and blue."}]},
]


def test_compare_cli_three_variants(tiny_model_dir, tuned_run_dir, leaked_prompt, tmp_path,
                                    capsys):
    """base, base+prompt, tuned side by side: compare.json with per-case pass, wins/losses,
    held-out loss per variant, and the contamination scan of the run's training data (R16)."""
    suite = write_suite(tmp_path / "suite.yaml", leaked_prompt=leaked_prompt)
    shots = write_jsonl(tmp_path / "shots.jsonl", [
        {"instruction": "Say hi.", "output": "Hi!"},
        {"instruction": "Say bye.", "output": "Bye!"},
    ])
    heldout = write_jsonl(tmp_path / "heldout.jsonl", HELDOUT)
    out = tmp_path / "cmp"
    code = main(["eval", "compare", "--tuned", str(tuned_run_dir), "--suite", str(suite),
                 "--system-prompt", "Be brief.", "--few-shot", str(shots), "-k", "2",
                 "--data", str(heldout), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads((out / "compare.json").read_text())
    assert list(data["variants"]) == ["base", "base+prompt", "tuned"]
    assert data["variants"]["base"]["model_ref"] == str(tiny_model_dir)  # from the run's metadata
    assert data["variants"]["base+prompt"]["few_shot_k"] == 2
    for name, v in data["variants"].items():
        assert (out / name / "cases.jsonl").is_file()
        assert v["heldout_loss"] > 0 and v["heldout_ppl"] == pytest.approx(
            2.718281828 ** v["heldout_loss"], rel=1e-6)
    # few-shot answers are prompt, not target: every variant is scored on the same tokens
    assert len({data["heldout"][n]["n_tokens"] for n in data["variants"]}) == 1
    assert data["variants"]["tuned"]["heldout_loss"] != data["variants"]["base"]["heldout_loss"]
    assert [c["id"] for c in data["cases"]] == ["ok", "leak", "never"]
    prompt_case = data["cases"][0]["results"]["base+prompt"]
    assert set(data["cases"][0]["results"]) == {"base", "base+prompt", "tuned"}
    assert prompt_case["passed"] is True
    pair = data["pairs"]["tuned vs base"]
    assert pair["wins"] + pair["losses"] + pair["both_pass"] + pair["both_fail"] == 3
    assert set(data["pairs"]) == {"base+prompt vs base", "tuned vs base", "tuned vs base+prompt"}
    contamination = data["contamination"]
    # "leak" shares a 13-gram with a training row; "ok" is short and in the training data whole
    assert {i["where"] for i in contamination["items"]} == {"leak", "ok"}
    assert "tuned vs base" in captured.out and "contamination: 2/3" in captured.out
    first_row = json.loads((out / "base+prompt" / "cases.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in first_row["prompt"]] == [
        "system", "user", "assistant", "user", "assistant", "user"]


def test_heldout_loss_equals_manual_masked_loss(tiny_model_dir, tmp_path):
    """Held-out loss = token-weighted NLL over assistant tokens only (training's mask), checked
    against a plain HF forward with labels."""
    import torch

    from tuneloop.data.records import Record
    from tuneloop.data.render import Renderer
    from tuneloop.eval.loss import heldout_loss
    from tuneloop.models import load_model

    model, tokenizer = load_model(str(tiny_model_dir))
    renderer = Renderer(tokenizer)
    records = [Record(messages=r["messages"]) for r in HELDOUT]
    ours = heldout_loss(model, tokenizer, renderer, records, progress=False)
    total, n = 0.0, 0
    for record in records:
        ex = renderer.render(record).example
        ids = torch.tensor([ex.input_ids])
        labels = torch.tensor([ex.labels])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
        target = labels[0, 1:]
        keep = target != -100
        nll = torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum")
        total += float(nll)
        n += int(keep.sum())
    assert ours.n_tokens == n and ours.n_examples == 2
    assert ours.loss == pytest.approx(total / n, abs=1e-5)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_shared_system_prompt_loss_equals_the_plain_path(tiny_model_dir, batch_size):
    """With a long system prompt on every row, the held-out loss computes the prompt once (its KV
    cache copied per batch); loss and token count equal the plain packed path to 1e-5."""
    from tuneloop.data.records import Record
    from tuneloop.data.render import Renderer
    from tuneloop.eval.loss import heldout_loss, render_heldout, shared_prefix_loss
    from tuneloop.models import load_model
    from tuneloop.train import evaluate_loss

    model, tokenizer = load_model(str(tiny_model_dir))
    model.eval()
    renderer = Renderer(tokenizer)
    system = " ".join(f"Rule {i}: answers are short and polite." for i in range(12))
    records = [Record(messages=r["messages"]) for r in HELDOUT] * 2 + [
        Record.chat(("user", "Name a colour."), ("assistant", "Blue, like the sea at noon."))]
    examples, _ = render_heldout(renderer, records, system_prompt=system)
    plain = evaluate_loss(model, examples, batch_size=batch_size)
    shared = shared_prefix_loss(model, examples, batch_size=batch_size)
    assert shared is not None, "the system prompt should be shared"
    assert shared[1] == plain.n_tokens
    assert shared[0] == pytest.approx(plain.loss, abs=1e-5)
    via_api = heldout_loss(model, tokenizer, renderer, records, system_prompt=system,
                           batch_size=batch_size, progress=False)
    assert via_api.loss == pytest.approx(plain.loss, abs=1e-5)
    # No shared system prompt: nothing to share, the plain path answers.
    assert shared_prefix_loss(model, render_heldout(renderer, records)[0]) is None


def test_loss_and_mc_cli(tiny_model_dir, tmp_path, capsys):
    """`eval loss --json` and `eval mc --out` print scores, write items.jsonl, record index rows."""
    from tuneloop.index import list_evals

    heldout = write_jsonl(tmp_path / "heldout.jsonl", HELDOUT)
    assert main(["eval", "loss", "--model", str(tiny_model_dir), "--data", str(heldout),
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed[str(tiny_model_dir)]["n_examples"] == 2
    items = write_jsonl(tmp_path / "mc.jsonl", [
        {"question": "What is the capital of France?", "choices": ["Paris", "London"],
         "answer": 0},
        {"question": "List three colours.", "choices": ["red, green, blue", "dog"], "answer": 0},
    ])
    out = tmp_path / "mc-out"
    assert main(["eval", "mc", str(items), "--model", str(tiny_model_dir), "--out",
                 str(out)]) == 0
    assert "acc" in capsys.readouterr().out
    lines = (out / "items.jsonl").read_text().splitlines()
    assert len(lines) == 2 and len(json.loads(lines[0])["loglikelihoods"]) == 2
    assert [r["kind"] for r in list_evals()] == ["loss", "mc"]
    assert main(["eval", "mc", "--model", str(tiny_model_dir)]) == 2  # nothing to do
