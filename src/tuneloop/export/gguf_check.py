"""Reload an exported GGUF with transformers' GGUF reader and compare it with the HF model.

What passes:
- weights: every tensor transformers reads back equals the HF weight after the same rounding the
  file applies (f16, or Q8_0 quantize + dequantize) — exactly. This is the check that catches a
  wrong name, Q/K layout or tied output; greedy text alone does not (a small random model answers
  the same with scrambled attention);
- tokenizer: the GGUF's own tokenizer + chat template give exactly the HF prompt ids on every
  probe conversation (both formats);
- f16: greedy answers identical, token for token, to the fp32 HF model's on every probe;
- q8_0: teacher-forced top-1 agreement ≥ Q8_AGREEMENT — the GGUF model, fed the HF model's greedy
  answer, predicts the same next token at that share of positions. (Free-running greedy text is
  reported too but not required: one near-tie flipped by quantization changes everything after it.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneloop.export.source import (
    PROBES,
    Check,
    ExportError,
    Source,
    logits_on,
    max_logit_diff,
    probe_ids,
)

Q8_AGREEMENT = 0.90
MAX_NEW_TOKENS = 24


def load_gguf(path: Path) -> tuple[Any, Any]:
    """(model, tokenizer) read back from a GGUF file by transformers (dequantized to fp32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                 dtype=torch.float32).eval()
    return model, tokenizer


def greedy_ids(model: Any, prompt: list[int], stop_ids: list[int], pad_id: int,
               max_new_tokens: int = MAX_NEW_TOKENS) -> list[int]:
    """Greedy continuation of one prompt (no padding), cut before the first stop token."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, top_k=None,
                              temperature=None, top_p=None, eos_token_id=stop_ids,
                              pad_token_id=pad_id)
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model.generate(input_ids=torch.tensor([prompt], device=device),
                             generation_config=config)
    new = out[0, len(prompt):].tolist()
    for i, tid in enumerate(new):
        if tid in stop_ids:
            return new[:i]
    return new


def _top1_agreement(hf_model: Any, gguf_model: Any, prompt: list[int],
                    answer: list[int]) -> tuple[int, int]:
    """(matching, total) next-token argmaxes over the answer positions, teacher-forced."""
    if not answer:
        return 0, 0
    full = prompt + answer
    a, b = logits_on(hf_model, [full])[0], logits_on(gguf_model, [full])[0]
    span = slice(len(prompt) - 1, len(full) - 1)
    same = (a[span].argmax(-1) == b[span].argmax(-1)).sum()
    return int(same), len(answer)


def _rounded(array: Any, quant: str) -> Any:
    """What a weight becomes after being written as QUANT and read back."""
    import gguf
    import numpy as np

    if array.ndim == 1:
        return array
    if quant == "q8_0" and array.shape[-1] % 32 == 0:
        qtype = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.dequantize(gguf.quants.quantize(array, qtype), qtype)
    return array.astype(np.float16).astype(np.float32)


def check_weights(source: Source, model: Any, quant: str) -> Check:
    """Every weight read back equals the HF weight rounded the way QUANT rounds it."""
    import numpy as np

    ours = source.model.state_dict()
    theirs = model.state_dict()
    missing = sorted(set(ours) ^ set(theirs))
    worst, worst_name = 0.0, ""
    for name, tensor in ours.items():
        if name not in theirs:
            continue
        want = _rounded(tensor.detach().float().cpu().numpy(), quant)
        got = theirs[name].detach().float().cpu().numpy()
        diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
        if diff > worst:
            worst, worst_name = diff, name
    passed = not missing and worst <= 1e-6
    detail = (f"{len(ours)} tensors read back equal the {quant}-rounded HF weights"
              if passed else f"max |Δw| {worst:.3g} in {worst_name or '-'}; "
              f"mismatched names {missing[:4]}")
    return Check("gguf weights (names, Q/K layout, tied output)", passed, detail,
                 {"max_abs_weight_diff": worst, "mismatched_names": missing})


def check_gguf(source: Source, path: Path, quant: str) -> list[Check]:
    """Run the round-trip checks on PATH (see the module docstring for what passes)."""
    from tuneloop.data.render import Renderer

    try:
        model, tokenizer = load_gguf(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read it back fails the export
        raise ExportError(f"transformers could not read the written GGUF back "
                          f"({type(exc).__name__}: {exc})", where=str(path),
                          fix="nothing was kept; report this with --debug output") from None
    renderer = Renderer(tokenizer, template="chat")
    hf_ids, gguf_ids = probe_ids(source.renderer), probe_ids(renderer)
    same_ids = hf_ids == gguf_ids
    checks = [check_weights(source, model, quant), Check("gguf tokenizer + chat template", same_ids,
                    "the GGUF's tokenizer and chat template give the HF prompt ids on "
                    f"{sum(a == b for a, b in zip(hf_ids, gguf_ids))}/{len(PROBES)} probes",
                    {"same_prompt_ids": same_ids})]
    pad = source.tokenizer.pad_token_id
    pad = pad if pad is not None else source.tokenizer.eos_token_id
    stops = list(source.renderer.stop_token_ids)
    texts_equal = matched = total = 0
    pairs = []
    for ids in hf_ids:
        ref = greedy_ids(source.model, ids, stops, pad)
        got = greedy_ids(model, ids, list(renderer.stop_token_ids), pad)
        ref_text = source.tokenizer.decode(ref, skip_special_tokens=True)
        got_text = tokenizer.decode(got, skip_special_tokens=True)
        texts_equal += ref_text == got_text and ref == got
        pairs.append((ref_text, got_text))
        same, n = _top1_agreement(source.model, model, ids, ref)
        matched, total = matched + same, total + n
    agreement = matched / total if total else 1.0
    diff = max_logit_diff(logits_on(source.model, hf_ids), logits_on(model, hf_ids))
    figures = {"greedy_identical": texts_equal, "prompts": len(hf_ids),
               "top1_agreement": agreement, "max_abs_logit_diff": diff,
               "answers": [{"hf": a, "gguf": b} for a, b in pairs]}
    detail = (f"greedy text identical on {texts_equal}/{len(hf_ids)} probes; teacher-forced "
              f"top-1 agreement {agreement:.1%} over {total} tokens; max |Δlogit| {diff:.3f}")
    if quant == "f16":
        passed = texts_equal == len(hf_ids)
        name = "gguf f16 round trip: identical greedy text"
    else:
        passed = agreement >= Q8_AGREEMENT
        name = f"gguf {quant} round trip: top-1 agreement ≥ {Q8_AGREEMENT:.0%}"
    checks.append(Check(name, passed and same_ids, detail, figures))
    return checks
