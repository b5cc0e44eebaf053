"""What the arena is asked to compare: prompt files and `--model [NAME=]SPEC` arguments."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from tuneloop.data.jsonl import read_jsonl_objects
from tuneloop.errors import DataError, UsageError

Messages = list[dict[str, str]]
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}")
_ROLES = ("system", "user", "assistant")


def _messages(row: dict, where: str) -> Messages:
    if isinstance(row.get("messages"), list):
        messages = []
        for k, m in enumerate(row["messages"]):
            if (not isinstance(m, dict) or m.get("role") not in _ROLES
                    or not isinstance(m.get("content"), str)):
                raise DataError(f"messages[{k}] needs a role ({', '.join(_ROLES)}) and string "
                                "content", where=where, fix='use {"role": "user", "content": "..."}')
            messages.append({"role": m["role"], "content": m["content"]})
        if messages and messages[-1]["role"] == "assistant":
            messages = messages[:-1]  # a reference answer is not part of the prompt
        if not messages or messages[-1]["role"] != "user":
            raise DataError("messages must end with a user turn (after any reference answer)",
                            where=where, fix="add the user message the models should answer")
        return messages
    if isinstance(row.get("prompt"), str) and row["prompt"].strip():
        return [{"role": "user", "content": row["prompt"]}]
    got = ", ".join(sorted(row)) or "no fields"
    raise DataError(f"row needs a non-empty string 'prompt' or a 'messages' list (got {got})",
                    where=where, fix='write {"prompt": "..."} or {"messages": [...]}')


def prompt_id(messages: Messages) -> str:
    """A stable id from the text itself, so the same prompt keeps its id across files and runs."""
    text = json.dumps(messages, ensure_ascii=False, sort_keys=True)
    return "p-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def read_prompts(path: str | Path) -> dict[str, Messages]:
    """Prompt id → chat messages from a JSONL file of {"prompt"} or {"messages"} rows (+ "id")."""
    prompts: dict[str, Messages] = {}
    seen: dict[str, str] = {}
    rows = read_jsonl_objects(path, example='{"prompt": "..."} or {"id": "q1", "messages": [...]}')
    for where, row in rows:
        messages = _messages(row, where)
        if "id" in row:
            if not isinstance(row["id"], (str, int)) or not str(row["id"]).strip():
                raise DataError("'id' must be a non-empty string or integer", where=where,
                                fix="drop the id (one is derived from the text) or fix it")
            pid = str(row["id"])
        else:
            pid = prompt_id(messages)
        if pid in seen:
            raise DataError(f"prompt id {pid!r} repeats the row at {seen[pid]}", where=where,
                            fix="remove the duplicate row or give it another id")
        seen[pid] = where
        prompts[pid] = messages
    if not prompts:
        raise DataError("no prompts in the file", where=str(path),
                        fix='add lines like {"prompt": "Explain overfitting in one sentence."}')
    return prompts


def parse_models(args: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`--model` values → display name → backend spec; `NAME=SPEC` names a spec, else name = spec."""
    models: dict[str, str] = {}
    for arg in args:
        name, sep, spec = arg.partition("=")
        if not sep or not _NAME.fullmatch(name):
            name, spec = arg, arg
        name, spec = name.strip(), spec.strip()
        if not spec:
            raise UsageError(f"--model {arg!r} has no model reference", where="--model",
                             fix="write --model NAME=REF or --model REF")
        if name in models:
            raise UsageError(f"two --model options are both named {name!r}", where="--model",
                             fix="name them apart: --model base=REF --model tuned=RUN_DIR")
        models[name] = spec
    if len(models) < 2:
        raise UsageError(f"the arena needs at least two models, got {len(models)}",
                         where="--model", fix="pass --model twice or more")
    return models


def parse_system_prompts(args: tuple[str, ...] | list[str], models: dict[str, str]
                         ) -> dict[str, str]:
    """`--system-prompt NAME=TEXT` values → model name → system prompt (NAME must be a model)."""
    prompts: dict[str, str] = {}
    for arg in args:
        name, sep, text = arg.partition("=")
        if not sep or not text.strip():
            raise UsageError(f"--system-prompt {arg[:60]!r} is not NAME=TEXT",
                             where="--system-prompt",
                             fix='write --system-prompt prompted="You are a careful assistant."')
        if name not in models:
            raise UsageError(f"--system-prompt names {name!r}, which is not a --model name",
                             where="--system-prompt", fix=f"use one of: {', '.join(models)}")
        if name in prompts:
            raise UsageError(f"two --system-prompt options for {name!r}", where="--system-prompt",
                             fix="give each model one system prompt")
        prompts[name] = text
    return prompts


def with_system(messages: Messages, system: str | None) -> Messages:
    """The prompt a model with its own system prompt answers: the prompt's own system turn wins."""
    if not system or any(m["role"] == "system" for m in messages):
        return messages
    return [{"role": "system", "content": system}, *messages]
