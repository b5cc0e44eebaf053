"""A tiny Llama and byte-level BPE tokenizer built in-process, so unit tests download nothing.

The tokenizer uses a ChatML template like the embedded SmolLM2 model (`<|im_start|>` /
`<|im_end|>`), so template and loss-mask code paths are the same ones the real model takes.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Shipped training text for the tiny BPE: enough variety that common words get merged.
_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "Write a short poem about the sea. The sea is wide and blue and deep.",
    "Summarise the meeting notes in two sentences.",
    "user assistant system You are a helpful assistant.",
    "Answer the question using the handbook. The office opens at nine.",
    "Translate to French: good morning. Bonjour.",
    "List three colours: red, green, blue.",
    "def add(a, b): return a + b  # numbers 0 1 2 3 4 5 6 7 8 9",
    "Email alice@example.com or call 555-0100 for help with the report.",
]


def make_tiny_tokenizer():
    """A PreTrainedTokenizerFast (byte-level BPE, ~400 tokens) with a ChatML chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def make_tiny_model(tokenizer, seed: int = 0, layers: int = 2, hidden: int = 64):
    """A randomly initialised 2-layer Llama sized for the tiny tokenizer (fp32, CPU)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def save_tiny_model_dir(path: Path, seed: int = 0) -> Path:
    """Write a plain HF model directory (config, safetensors, tokenizer) usable as a model ref."""
    path = Path(path)
    tokenizer = make_tiny_tokenizer()
    model = make_tiny_model(tokenizer, seed=seed)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
