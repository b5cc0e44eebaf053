"""`arena results` piped into a file or another program keeps full model names (no 80-column
cut), and `arena export --help` names the config key that trains on its output."""

from __future__ import annotations

import os
import subprocess
import sys

from tuneloop.cli import main

# as long as an arena name may be (64 characters): run directory names get this long
LONG = ["lora-r16-alpha32-lr2e-4-handbook-round-3-20250101-120000-alpha",
        "full-finetune-lr1e-5-handbook-round-2-20250101-093000-final-beta"]


def test_piped_results_keep_full_model_names(tmp_path, fake_backend):
    from arenahelp import write_prompts

    from tuneloop.arena.server import prepare
    from tuneloop.backends import GenParams

    url, _ = fake_backend
    specs = [f"{name}=openai:{url}#{m}" for name, m in zip(LONG, ("alpha", "beta"))]
    db = tmp_path / "arena.sqlite"
    store, ids, _ = prepare(write_prompts(tmp_path / "prompts.jsonl"), specs, db,
                            GenParams(max_tokens=16), progress=False)
    _, session = store.create_session("ann")
    for prompt in ids[:2]:
        battle = store.issue_battle(session, prompt, LONG[0], LONG[1])
        store.cast_vote(session, battle, "a", reason="")
    store.close()
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run([sys.executable, "-m", "tuneloop", "arena", "results", "--db", str(db),
                           "--bootstrap", "20"], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in LONG:  # whole, on one line, in the ratings table and the win-rate matrix
        assert sum(name in line for line in lines) >= 2, (name, done.stdout)
    assert "…" not in done.stdout


def test_export_help_names_objective_dpo(capsys):
    assert main(["arena", "export", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "objective: dpo" in text and "method: dpo" not in text


def _doc_commands(name: str) -> list[list[str]]:
    """The command words (`arena export`, `eval compare`, …) of every `tuneloop …` line in the
    fenced code blocks of docs/NAME."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / name).read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("tuneloop "):
                words = []
                for w in line.split()[1:]:
                    if not re.fullmatch(r"[a-z][a-z-]*", w):
                        break
                    words.append(w)
                found.append(words)
    return found


def test_arena_and_preference_docs_name_real_commands_and_keys(capsys):
    """docs/preferences.md once sent people to `tuneloop compare` (it is `eval compare`), and
    docs/arena.md to `method: dpo` (the key is `objective: dpo`)."""
    from pathlib import Path

    for name in ("arena.md", "preferences.md"):
        commands = _doc_commands(name)
        assert commands, name
        for words in commands:
            assert main([*words, "--help"]) == 0, (name, words)
    capsys.readouterr()
    docs = Path(__file__).resolve().parents[2] / "docs"
    arena = (docs / "arena.md").read_text(encoding="utf-8")
    assert "method: dpo" not in arena and "objective: dpo" in arena
    assert ["eval", "compare"] in _doc_commands("preferences.md")
