"""The final model of a run: RUN/model (adapter or full weights, tokenizer + template, metadata)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from tuneloop.rundir import RunDir


def _base_reference(ref: str, method: str) -> str:
    """A model reference that still resolves from another working directory.

    A LoRA run that continued another LoRA run's adapter is an adapter on *that* run's base
    model (the same adapter trained further), so its base is the earlier run's base.
    """
    from tuneloop.models import resolve_model_ref

    p = Path(ref)
    if method == "lora" and p.exists():
        resolved = resolve_model_ref(ref)
        if resolved.adapter is not None and resolved.base_ref:
            return resolved.base_ref
    return str(p.resolve()) if p.exists() else ref


def save_final_model(
    model: Any, tokenizer: Any, renderer: Any, run_dir: Path, *, base_model: str, method: str,
    data_format: str,
) -> Path:
    """Write RUN/model (adapter or full weights, tokenizer + template, tuneloop_model.json)."""
    from tuneloop.models import save_model_metadata

    final = RunDir(Path(run_dir)).model
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    # peft writes a placeholder model card; the run's own files describe the model instead
    (tmp / "README.md").unlink(missing_ok=True)
    template_ref = renderer.template_name  # chat, alpaca, or the path of a user Jinja file
    if template_ref not in ("chat", "alpaca"):
        # a user Jinja file: keep a copy beside the weights and make it the tokenizer's template
        (tmp / "template.jinja").write_text(renderer.template_source, encoding="utf-8")
        template_ref = "template.jinja"
        tokenizer.chat_template = renderer.template_source
    tokenizer.save_pretrained(tmp)
    save_model_metadata(tmp, base_model=_base_reference(base_model, method), method=method,
                        template=template_ref, format=data_format)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final
