"""The model being exported: loaded once at full precision, with the template it was trained with.

Every format starts here. A LoRA run is merged into its fp32 base (never into a quantized copy:
rounding the base before adding the low-rank update throws the update's precision away), and the
merge is checked against the adapter model's own logits before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneloop.errors import ExportError

# Probe conversations for the checks: short, varied, one with a system turn and two turns.
PROBES: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one short sentence."},
     {"role": "user", "content": "Why is the sea blue?"}],
    [{"role": "user", "content": "List three colours."},
     {"role": "assistant", "content": "Red, green and blue."},
     {"role": "user", "content": "Now three animals."}],
]
MERGE_TOLERANCE = 1e-4


@dataclass
class Check:
    """One check the export ran on its own result: what, the measured figure, pass or fail."""

    name: str
    passed: bool
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Source:
    """A model ready to export: plain fp32 weights (adapter merged), tokenizer, renderer."""

    ref: str
    model: Any
    tokenizer: Any
    renderer: Any
    method: str  # "base" | "lora" | "full"
    base_ref: str
    data_format: str
    reference_logits: list[Any]  # unmerged model's float64 logits on PROBES (to keep)
    checks: list[Check] = field(default_factory=list)


def probe_ids(renderer: Any) -> list[list[int]]:
    """Token ids of the probe prompts under the model's training template."""
    return [renderer.prompt_ids(p) for p in PROBES]


def logits_on(model: Any, ids_list: list[list[int]]) -> list[Any]:
    """Logits of each prompt on CPU, run one at a time (no padding to blur the comparison)."""
    import torch

    out = []
    device = next(model.parameters()).device
    with torch.inference_mode():
        for ids in ids_list:
            logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits
            out.append(logits[0].cpu())
    return out


def precise_logits(model: Any, ids_list: list[list[int]]) -> list[Any]:
    """Logits computed in float64 from the model's fp32 weights (upcast exactly, then restored).

    Why: the merge check must measure the merge, not fp32 summation order. In fp32,
    x@W + (x@A)@B and x@(W + BA) already differ by ~1e-4 in SmolLM2's logits (measured: 1.3e-4
    after 30 layers), which would fail a correct merge; in float64 that noise is ~1e-12, so what
    remains is the fp32 rounding of the merged weights themselves — the thing being checked.
    """
    import torch

    model.to(torch.float64)
    try:
        return logits_on(model, ids_list)
    finally:
        model.to(torch.float32)


def max_logit_diff(a: list[Any], b: list[Any]) -> float:
    """Largest absolute difference between two lists of logit tensors."""
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def load_source(ref: str, *, device: str = "cpu") -> Source:
    """Load REF at fp32; merge a LoRA adapter into the fp32 base and check the merge (≤ 1e-4)."""
    import torch

    from tuneloop.data.render import Renderer
    from tuneloop.models import load_model, model_template, resolve_model_ref

    resolved = resolve_model_ref(ref)
    if resolved.kind == "gguf":
        raise ExportError(f"{ref} is already a GGUF file", fix="export the run directory (or "
                          "HF model) it came from instead")
    model, tokenizer = load_model(resolved, device=device, dtype=torch.float32)
    renderer = Renderer(tokenizer, template=model_template(resolved))
    ids = probe_ids(renderer)
    reference = precise_logits(model, ids)
    meta = resolved.metadata
    if resolved.adapter is not None:
        method = "lora"
        model = model.merge_and_unload()
        model.eval()
    else:
        method = str(meta.get("method") or "base")
    source = Source(ref=ref, model=model, tokenizer=tokenizer, renderer=renderer, method=method,
                    base_ref=resolved.base_ref or ref, data_format=str(meta.get("format") or "chat"),
                    reference_logits=reference)
    if method == "lora":
        diff = max_logit_diff(reference, precise_logits(model, ids))
        check = Check("merged == adapter logits", diff <= MERGE_TOLERANCE,
                      f"max |Δlogit| {diff:.2e} over {len(ids)} prompts, float64 forward "
                      f"(limit {MERGE_TOLERANCE:g})", {"max_abs_logit_diff": diff})
        source.checks.append(check)
        require(check)
    return source


def require(check: Check) -> None:
    """Raise ExportError when a check failed (the export is not written)."""
    if not check.passed:
        raise ExportError(f"export check failed: {check.name}: {check.detail}",
                          fix="nothing was written; re-run with --debug and report the figures "
                          "(this is a bug in tuneloop export or an unsupported model)")
