"""`tuneloop generate`, `tuneloop chat` (stdin piped to a real subprocess) and `data preview`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from infer_qa import QA

from tuneloop.cli import main


def test_generate_writes_answers_keeping_input_rows(trained_tiny_dir, tmp_path, capsys):
    """Rows keep their fields and gain output/n_tokens/finish_reason; a trailing reference answer
    in "messages" is not sent to the model (R14: the trained model stops)."""
    inp = tmp_path / "prompts.jsonl"
    rows = [{"prompt": QA[0][0], "id": 1},
            {"messages": [{"role": "user", "content": QA[2][0]},
                          {"role": "assistant", "content": "reference"}], "id": 2},
            {"prompt": QA[3][0], "id": 3}]
    inp.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    out = tmp_path / "sub" / "answers.jsonl"
    rc = main(["generate", "--model", str(trained_tiny_dir), "--input", str(inp), "--out",
               str(out), "--max-new-tokens", "24", "--batch-size", "2"])
    assert rc == 0, capsys.readouterr().err
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["id"] for g in got] == [1, 2, 3]
    assert got[1]["messages"][-1]["content"] == "reference"
    assert [g["output"] for g in got] == [QA[0][1], QA[2][1], QA[3][1]]
    assert all(g["finish_reason"] == "stop" and g["n_tokens"] > 1 for g in got)
    assert "wrote 3 answers" in capsys.readouterr().err


def test_generate_bad_input_names_file_and_line(trained_tiny_dir, tmp_path, capsys):
    """R10: malformed rows → one clean error with file:line and the fix, exit 1, no output file."""
    inp = tmp_path / "p.jsonl"
    inp.write_text('{"prompt": "hi"}\n{"prompt": 3}\n')
    out = tmp_path / "a.jsonl"
    rc = main(["generate", "--model", str(trained_tiny_dir), "--input", str(inp), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and f"{inp}:2" in err and "'prompt'" in err and "Traceback" not in err
    assert not out.exists()
    inp.write_text('{"prompt": "hi"}\n{"prompt": \n')
    assert main(["generate", "--model", str(trained_tiny_dir), "--input", str(inp), "--out",
                 str(out)]) == 1
    assert "invalid JSON" in capsys.readouterr().err


def test_chat_repl_over_piped_stdin(trained_tiny_dir):
    """Multi-turn chat in a real process: streamed replies, /system, /reset, unknown command, /exit."""
    script = "\n".join([QA[0][0], "/system You are a helpful assistant.", QA[3][0], "/system",
                        QA[3][0], "/reset", "/bogus", QA[2][0], "/exit", "never read"]) + "\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "tuneloop", "chat", str(trained_tiny_dir),
                           "--max-new-tokens", "24"], input=script, capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index("(system prompt set; conversation reset)")
    end = lines.index("(system prompt cleared; conversation reset)")
    # The model never saw a system prompt in training, so with one it no longer gives its
    # memorised answer: proof the system prompt reaches the template.
    with_system = lines[start + 1:end]
    assert with_system and with_system[0] != QA[3][1]
    assert lines[:start + 1] == [QA[0][1], "(system prompt set; conversation reset)"]
    assert lines[end:] == ["(system prompt cleared; conversation reset)", QA[3][1],
                           "(conversation reset)",
                           "unknown command '/bogus'; commands: /reset  /system TEXT  /exit",
                           QA[2][1]]


def test_chat_history_and_system_prompt(trained):
    """The REPL keeps the conversation and sends the system prompt in the rendered history."""
    import io

    from tuneloop.infer.chat import run_chat

    model, tok, renderer = trained
    out = io.StringIO()
    history = run_chat(model, tok, renderer, lines=[QA[0][0], QA[1][0]], out=out,
                       system="Be brief.", max_new_tokens=12)
    assert [m["role"] for m in history] == ["system", "user", "assistant", "user", "assistant"]
    assert history[0]["content"] == "Be brief." and history[2]["content"] == out.getvalue().split("\n")[0]


def test_data_preview_marks_trained_tokens(tiny_model_dir, tmp_path, capsys):
    """Preview shows rendered text with exactly the answer + end-of-turn marked, and counts."""
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [
        {"messages": [{"role": "user", "content": "What is the capital of France?"},
                      {"role": "assistant", "content": "Paris."}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant",
                                                          "content": "The sea is blue. " * 8}]},
        {"messages": [{"role": "user", "content": "not shown"},
                      {"role": "assistant", "content": "x"}]},
    ]) + "\n")
    rc = main(["data", "preview", str(data), "--model", str(tiny_model_dir), "-n", "2",
               "--plain", "--max-length", "30"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "<|im_start|>assistant\n⟦Paris.<|im_end|>⟧\n" in out
    assert f"{data}:1 ── " in out and "dropped: answer_cut_by_max_length" in out
    assert "not shown" not in out and "2 of 3 records shown (template chat)" in out
    assert out.count("⟦") == 1
    rc = main(["data", "preview", str(data), "--model", str(tiny_model_dir), "-n", "1",
               "--plain", "--train-on-prompt"])
    assert "⟦<|im_start|>user" in capsys.readouterr().out


def test_terminal_lines_until_ctrl_d(monkeypatch, capsys):
    """At a terminal, lines come from input() (readline editing) until Ctrl-D (EOF)."""
    from tuneloop.infer.chat import terminal_lines

    typed = iter(["hello", "/exit"])

    def fake_input(prompt):
        assert prompt == "> "
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    assert list(terminal_lines()) == ["hello", "/exit"]
