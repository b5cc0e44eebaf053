"""Synth prompt files: package data under resources/synth, overridable with a directory."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from tuneloop.errors import UsageError
from tuneloop.eval.judge import JudgePrompt, load_prompt

PACKAGE_DIR = ("resources", "synth")


def prompt_source(name: str, prompt_dir: str | Path | None = None) -> Path:
    """The file `name`.yaml is read from (override directory first, else package data)."""
    if prompt_dir is not None:
        return Path(prompt_dir) / f"{name}.yaml"
    return Path(str(resources.files("tuneloop").joinpath(*PACKAGE_DIR, f"{name}.yaml")))


def load(name: str, prompt_dir: str | Path | None = None) -> tuple[JudgePrompt, str]:
    """(prompt, sha256 of its file) — same YAML shape as the judge prompts (system + prompt)."""
    src = prompt_source(name, prompt_dir)
    if not src.is_file():
        raise UsageError(f"synth prompt {name!r} not found", where=str(src),
                         fix="copy src/tuneloop/resources/synth/ into your --prompts directory")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    return load_prompt(name, src.parent), digest


def load_all(names: list[str], prompt_dir: str | Path | None = None
             ) -> tuple[dict[str, JudgePrompt], dict[str, str]]:
    """Prompts by name and their hashes (for the manifest)."""
    prompts: dict[str, JudgePrompt] = {}
    hashes: dict[str, str] = {}
    for name in names:
        prompts[name], hashes[name] = load(name, prompt_dir)
    return prompts, hashes
