"""`--format hf`: an ordinary Hugging Face model directory (merged fp32 weights, tokenizer, chat
template, tuneloop_model.json), reloaded from disk and checked against the unmerged model."""

from __future__ import annotations

from pathlib import Path

from tuneloop.export.source import (
    MERGE_TOLERANCE,
    PROBES,
    Check,
    Source,
    max_logit_diff,
    precise_logits,
    probe_ids,
    require,
)


def write_hf(source: Source, out: Path) -> list[Path]:
    """Save the merged model as a plain HF directory in OUT (which must exist and be empty)."""
    from tuneloop.models import save_model_metadata

    model, tokenizer, renderer = source.model, source.tokenizer, source.renderer
    # The template the model was trained with becomes the tokenizer's chat template, so vLLM,
    # llama.cpp and transformers all prompt it the way it learned (an alpaca or custom .jinja
    # run too, not only runs that used the base's own chat template).
    tokenizer.chat_template = renderer.template_source
    gen = model.generation_config
    if gen is not None:
        gen.eos_token_id = list(renderer.stop_token_ids)
        gen.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    save_model_metadata(out, base_model=source.base_ref, method="full", template="chat",
                        format=source.data_format)
    return sorted(out.iterdir())


def check_hf(source: Source, out: Path) -> Check:
    """Reload OUT with plain transformers; its logits must equal the unmerged model's (≤ 1e-4)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = probe_ids(source.renderer)
    # The saved tokenizer + chat template must give the exact prompt ids the model was trained on.
    saved_ids = [tokenizer.apply_chat_template(p, add_generation_prompt=p[-1]["role"] != "assistant",
                                               tokenize=False) for p in PROBES]
    same_prompt = [tokenizer(t, add_special_tokens=False).input_ids for t in saved_ids] == ids
    diff = max_logit_diff(source.reference_logits, precise_logits(reloaded, ids))
    what = "merged == adapter logits" if source.method == "lora" else "saved == loaded logits"
    check = Check(f"hf reload: {what}", diff <= MERGE_TOLERANCE and same_prompt,
                  f"max |Δlogit| {diff:.2e}, float64 forward (limit {MERGE_TOLERANCE:g}); saved "
                  f"chat template gives the training prompt ids: {'yes' if same_prompt else 'NO'}",
                  {"max_abs_logit_diff": diff, "same_prompt_ids": same_prompt})
    require(check)
    return check

