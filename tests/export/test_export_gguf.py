"""`tuneloop export --format gguf`: llama.cpp's tensor names and Q/K layout, the BPE vocabulary,
chat template and stop ids in the file, and a transformers round trip with the same greedy text."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tuneloop.cli import main


def _greedy(model, ids, stop_ids, n=20):
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                             eos_token_id=stop_ids, pad_token_id=0, top_k=None, top_p=None,
                             temperature=None)
    return out[0, len(ids):].tolist()


def test_rope_permutation_is_what_transformers_reader_undoes():
    """Our Q/K row order is the inverse of transformers' GGUF reader's reverse permutation (taken
    from llama.cpp's converter), for Q (9 heads) and grouped K (3 kv heads), and is not a no-op."""
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from tuneloop.export.gguf_file import rope_permute

    undo = LlamaTensorProcessor(config={})._reverse_permute_weights
    rng = np.random.default_rng(0)
    for heads, kv in ((9, 9), (9, 3)):
        w = rng.standard_normal((kv * 64, 576)).astype(np.float32)
        permuted = rope_permute(w, kv)
        assert not np.array_equal(permuted, w)
        assert np.array_equal(undo(permuted, heads, kv), w)
    # within one head, HF's rotate-half partners (i, i + d/2) become neighbours (2i, 2i + 1)
    head = np.arange(8)[:, None].astype(np.float32)
    assert rope_permute(head, 1)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_lora_run_gguf_round_trip(lora_run, tiny_model_dir, tmp_path, quant):
    """The GGUF of a LoRA run holds llama.cpp's names (tied output left out), the vocabulary,
    template and stop ids (eot = <|im_end|>, R14); read back by transformers its tokenizer and
    template give the training prompt ids (R15) and it answers like the adapter model."""
    import gguf
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / quant
    assert main(["export", str(lora_run), "--format", "gguf", "--quant", quant,
                 "--out", str(out), "--no-progress"]) == 0
    name = f"model-{quant}.gguf"
    assert {p.name for p in out.iterdir()} == {name, "export.json"}

    reader = gguf.GGUFReader(out / name)
    tensors = {t.name: t for t in reader.tensors}
    expected = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{b}.{part}.weight" for b in range(2) for part in (
            "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
            "attn_norm", "ffn_norm")}
    assert set(tensors) == expected  # tied embeddings: no output.weight
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    big = gguf.GGMLQuantizationType.F16 if quant == "f16" else gguf.GGMLQuantizationType.Q8_0
    assert tensors["blk.1.ffn_down.weight"].tensor_type == big
    fields = {k: f.contents() for k, f in reader.fields.items()
              if k not in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                           "tokenizer.ggml.merges")}
    hf_tok = AutoTokenizer.from_pretrained(lora_run / "model")
    assert fields["general.architecture"] == "llama" and fields["llama.block_count"] == 2
    assert fields["llama.attention.head_count"] == 4
    assert fields["llama.attention.head_count_kv"] == 2
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["tokenizer.chat_template"] == hf_tok.chat_template
    im_end = hf_tok.convert_tokens_to_ids("<|im_end|>")
    assert fields["tokenizer.ggml.eos_token_id"] == im_end
    assert fields["tokenizer.ggml.eot_token_id"] == im_end
    assert fields["tokenizer.ggml.padding_token_id"] == hf_tok.pad_token_id != im_end
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    assert len(tokens) == len(hf_tok) and tokens[im_end] == "<|im_end|>"
    assert types[im_end] == gguf.TokenType.CONTROL and types[200] == gguf.TokenType.NORMAL
    assert fields["tuneloop.method"] == "lora"

    # independent round trip: transformers' reader vs the adapter model, same greedy tokens
    g_model = AutoModelForCausalLM.from_pretrained(out, gguf_file=name,
                                                   dtype=torch.float32).eval()
    g_tok = AutoTokenizer.from_pretrained(out, gguf_file=name)
    adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                        lora_run / "model").eval()
    agree = total = 0
    for content in ("Describe item 3.", "What is the capital of France?", "List three colours."):
        msgs = [{"role": "user", "content": content}]
        text = hf_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        assert g_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) == text
        ids = hf_tok(text, add_special_tokens=False).input_ids
        assert g_tok(text, add_special_tokens=False).input_ids == ids
        want = _greedy(adapter, ids, [im_end])
        got = _greedy(g_model, ids, [im_end])
        if quant == "f16":
            assert got == want
            assert g_tok.decode(got) == hf_tok.decode(want)
        agree += sum(a == b for a, b in zip(got, want))
        total += len(want)
    assert quant == "f16" or agree / total >= 0.5  # q8_0: the command's own check is stricter
    checks = json.loads((out / "export.json").read_text())["checks"]
    assert all(c["passed"] for c in checks) and len(checks) == 4
    assert checks[1]["figures"]["max_abs_weight_diff"] <= 1e-6
    if quant == "q8_0":
        assert checks[-1]["figures"]["top1_agreement"] >= 0.9


def test_wrong_permutation_would_be_caught(lora_run, tmp_path, monkeypatch, capsys):
    """Without the Q/K permutation the export fails its own weights check and writes nothing
    (the tiny random model's greedy text alone would not notice: its attention barely matters)."""
    from tuneloop.export import gguf_file

    monkeypatch.setattr(gguf_file, "rope_permute", lambda weight, n_head: weight)
    out = tmp_path / "bad"
    assert main(["export", str(lora_run), "--format", "gguf", "--out", str(out),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "export check failed: gguf weights" in err and "self_attn.q_proj" in err
    assert not out.exists()


def test_gguf_export_refuses_unsupported_architecture(tmp_path, capsys):
    """A non-Llama model: a clear refusal pointing at the hf format, not a broken file."""
    from tiny import make_tiny_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = make_tiny_tokenizer()
    model_dir = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=1, n_embd=32, n_head=2)).save_pretrained(
        model_dir)
    tok.save_pretrained(model_dir)
    assert main(["export", str(model_dir), "--format", "gguf", "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "does not support model type 'gpt2'" in err and "--format hf" in err
    assert not (tmp_path / "o").exists()
