"""Write a Llama-architecture GGUF (F16 or Q8_0) with the `gguf` package, readable by llama.cpp.

What llama.cpp expects and this writes: `llama.*` hyper-parameters; tensors named `token_embd`,
`blk.N.attn_q|k|v|output`, `blk.N.ffn_gate|up|down`, `blk.N.attn_norm|ffn_norm`, `output_norm`,
`output` (left out when the embeddings are tied, so llama.cpp reuses `token_embd`); Q and K rows
re-ordered from HF's rotate-half RoPE layout to the interleaved-pair layout llama.cpp's RoPE
kernel reads; a byte-level BPE vocabulary (tokens, token types, merges, pre-tokenizer name); the
chat template the model was trained with; bos/eos/eot/pad ids.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tuneloop.export.source import ExportError, Source

QUANTS = ("f16", "q8_0")
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)\.weight$")
_LAYER_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def gguf_name(quant: str) -> str:
    """The file name an export writes: model-f16.gguf, model-q8_0.gguf."""
    return f"model-{quant}.gguf"


def rope_permute(weight: Any, n_head: int) -> Any:
    """HF rotate-half row order → llama.cpp interleaved pairs, per head (numpy or torch).

    Within each head HF rotates row i with row i + d/2; llama.cpp rotates rows 2i and 2i+1.
    View each head as (2, d/2), swap the two axes, flatten: row i+d/2 lands next to row i.
    """
    rows = weight.shape[0]
    return (weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _config_value(config: Any, name: str, default: Any = None) -> Any:
    return getattr(config, name, default)


def _check_supported(config: Any) -> None:
    what = None
    if _config_value(config, "model_type") != "llama":
        what = f"model type {_config_value(config, 'model_type')!r} (only 'llama' is supported)"
    elif _config_value(config, "attention_bias") or _config_value(config, "mlp_bias"):
        what = "a Llama with attention/MLP biases"
    elif _config_value(config, "hidden_act", "silu") != "silu":
        what = f"activation {config.hidden_act!r} (llama.cpp's llama graph uses silu)"
    else:
        rope = _config_value(config, "rope_parameters") or _config_value(config, "rope_scaling")
        rope_type = (rope or {}).get("rope_type") or (rope or {}).get("type") or "default"
        if rope_type != "default":
            what = f"RoPE scaling type {rope_type!r}"
    if what:
        raise ExportError(f"GGUF export does not support {what}",
                          fix="export --format hf and convert it with llama.cpp's "
                          "convert_hf_to_gguf.py")


def _rope_theta(config: Any) -> float:
    rope = _config_value(config, "rope_parameters") or {}
    theta = rope.get("rope_theta") if isinstance(rope, dict) else None
    return float(theta or _config_value(config, "rope_theta", 10000.0))


def gguf_tensors(model: Any) -> list[tuple[str, Any]]:
    """(GGUF name, fp32 numpy array) for every weight, Q/K permuted, tied output left out."""
    config = model.config
    n_head = config.num_attention_heads
    n_kv = config.num_key_value_heads or n_head
    tied = bool(_config_value(config, "tie_word_embeddings", False))
    out: list[tuple[str, Any]] = []
    for name, tensor in model.state_dict().items():
        array = tensor.detach().float().cpu().numpy()
        if name == "model.embed_tokens.weight":
            out.append(("token_embd.weight", array))
        elif name == "model.norm.weight":
            out.append(("output_norm.weight", array))
        elif name == "lm_head.weight":
            if not tied:
                out.append(("output.weight", array))
        elif "rotary_emb" in name:
            continue  # recomputed from rope.freq_base by every reader
        elif m := _LAYER.match(name):
            block, part = m.groups()
            if part not in _LAYER_NAMES:
                raise ExportError(f"unexpected weight {name} for a Llama model",
                                  fix="export --format hf instead")
            if part == "self_attn.q_proj":
                array = rope_permute(array, n_head)
            elif part == "self_attn.k_proj":
                array = rope_permute(array, n_kv)
            out.append((f"blk.{block}.{_LAYER_NAMES[part]}.weight", array))
        else:
            raise ExportError(f"unexpected weight {name} for a Llama model",
                              fix="export --format hf instead")
    return out


# -- tokenizer -------------------------------------------------------------------------------


def _pre_tokenizer_name(spec: dict | None) -> str:
    """llama.cpp's name for the pre-tokenizer this tokenizer.json describes."""

    def byte_level(p: dict) -> bool:
        return (p.get("type") == "ByteLevel" and not p.get("add_prefix_space")
                and p.get("use_regex", True))

    if spec and byte_level(spec):
        return "gpt-2"
    if spec and spec.get("type") == "Sequence":
        parts = spec.get("pretokenizers") or []
        if (len(parts) == 2 and parts[0].get("type") == "Digits"
                and parts[0].get("individual_digits") and byte_level(parts[1])):
            return "smollm"
    raise ExportError(f"GGUF export does not know the pre-tokenizer {json.dumps(spec)[:200]}",
                      fix="export --format hf and convert it with llama.cpp's "
                      "convert_hf_to_gguf.py")


def vocab_fields(tokenizer: Any, n_vocab: int) -> dict[str, Any]:
    """tokens, token types, merges and pre-tokenizer of a byte-level BPE tokenizer (gpt2 style)."""
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportError("GGUF export needs a fast (tokenizers) tokenizer",
                          fix="export --format hf instead")
    data = json.loads(backend.to_str())
    model = data.get("model") or {}
    if model.get("type") != "BPE" or (data.get("decoder") or {}).get("type") != "ByteLevel":
        raise ExportError(f"GGUF export supports byte-level BPE tokenizers, not "
                          f"{model.get('type')} with a {(data.get('decoder') or {}).get('type')} "
                          "decoder", fix="export --format hf instead")
    if data.get("normalizer"):
        raise ExportError("GGUF export does not support a tokenizer normalizer",
                          fix="export --format hf instead")
    pre = _pre_tokenizer_name(data.get("pre_tokenizer"))
    tokens: list[str | None] = [None] * n_vocab
    types = [gguf.TokenType.NORMAL] * n_vocab
    for token, tid in model["vocab"].items():
        if tid >= n_vocab:
            raise ExportError(f"token {token!r} has id {tid} ≥ the model's {n_vocab} embeddings",
                              fix="the tokenizer does not belong to this model")
        tokens[tid] = token
    for added in data.get("added_tokens") or []:
        tid = added["id"]
        if tid >= n_vocab:
            raise ExportError(f"added token {added['content']!r} has id {tid} ≥ the model's "
                              f"{n_vocab} embeddings", fix="resize the embeddings before export")
        tokens[tid] = added["content"]
        types[tid] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    for tid, token in enumerate(tokens):
        if token is None:  # embedding rows past the tokenizer (padded vocab): llama.cpp's naming
            tokens[tid] = f"[PAD{tid}]"
            types[tid] = gguf.TokenType.UNUSED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    return {"tokens": tokens, "types": types, "merges": merges, "pre": pre}


def _adds_token(tokenizer: Any, token_id: int | None, *, first: bool) -> bool:
    if token_id is None:
        return False
    ids = tokenizer("a").input_ids
    return bool(ids) and (ids[0] if first else ids[-1]) == token_id


# -- writer ----------------------------------------------------------------------------------


def write_gguf(source: Source, path: Path, quant: str) -> Path:
    """Write SOURCE's merged model to PATH as a GGUF with QUANT ("f16" or "q8_0")."""
    import gguf
    import numpy as np

    if quant not in QUANTS:
        raise ExportError(f"unknown GGUF quantization {quant!r}",
                          fix=f"use one of {', '.join(QUANTS)}")
    model, tokenizer, renderer = source.model, source.tokenizer, source.renderer
    config = model.config
    _check_supported(config)
    tensors = gguf_tensors(model)
    n_vocab = int(config.vocab_size)
    vocab = vocab_fields(tokenizer, n_vocab)
    n_head = config.num_attention_heads
    head_dim = _config_value(config, "head_dim") or config.hidden_size // n_head

    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(Path(source.ref).name or source.ref)
    w.add_context_length(int(config.max_position_embeddings))
    w.add_embedding_length(int(config.hidden_size))
    w.add_block_count(int(config.num_hidden_layers))
    w.add_feed_forward_length(int(config.intermediate_size))
    w.add_head_count(int(n_head))
    w.add_head_count_kv(int(config.num_key_value_heads or n_head))
    w.add_rope_dimension_count(int(head_dim))
    w.add_rope_freq_base(_rope_theta(config))
    w.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    w.add_vocab_size(n_vocab)
    file_type = gguf.LlamaFileType.MOSTLY_F16 if quant == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0
    w.add_file_type(file_type)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(vocab["pre"])
    w.add_token_list(vocab["tokens"])
    w.add_token_types(vocab["types"])
    w.add_token_merges(vocab["merges"])
    special = {
        "bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id,
        "pad": tokenizer.pad_token_id, "unk": tokenizer.unk_token_id,
    }
    if special["bos"] is not None:
        w.add_bos_token_id(int(special["bos"]))
    w.add_eos_token_id(int(special["eos"]))
    stops = renderer.stop_token_ids
    if stops:
        w.add_eot_token_id(int(stops[0]))  # the end-of-turn token (e.g. <|im_end|>)
    if special["pad"] is not None:
        w.add_pad_token_id(int(special["pad"]))
    if special["unk"] is not None:
        w.add_unk_token_id(int(special["unk"]))
    w.add_add_bos_token(_adds_token(tokenizer, special["bos"], first=True))
    w.add_add_eos_token(_adds_token(tokenizer, special["eos"], first=False))
    w.add_chat_template(renderer.template_source)
    # tuneloop's own description of the model (llama.cpp ignores unknown keys)
    w.add_string("tuneloop.base_model", source.base_ref)
    w.add_string("tuneloop.method", source.method)

    for name, array in tensors:
        if array.ndim == 1:  # norms stay fp32 in every llama.cpp file type
            w.add_tensor(name, array.astype(np.float32))
        elif quant == "q8_0" and array.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(array.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:  # F16, or a row length Q8_0's 32-value blocks do not divide (llama.cpp does this too)
            w.add_tensor(name, array.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
