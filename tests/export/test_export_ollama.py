"""`tuneloop export --format ollama`: the Modelfile's Go TEMPLATE, rendered the way Ollama does
for a two-turn conversation, is byte for byte the tokenizer's chat template; the stops are the
model's end-of-turn token; templates it cannot translate are refused, not guessed."""

from __future__ import annotations

import re

import pytest

from tuneloop.cli import main

TWO_TURNS = [{"role": "user", "content": "Hi there"},
             {"role": "assistant", "content": "Hello! How can I help?"},
             {"role": "user", "content": "Name a colour."}]


def render_go_template(template: str, messages: list[dict], system: str | None) -> str:
    """A tiny renderer for the Go-template subset in Modelfiles: text, {{ range .Messages }} ...
    {{ end }}, {{ .Role }} / {{ .Content }}, and the {{- / -}} whitespace trims. Anything else is
    an error (so an unexpected construct fails the test instead of rendering wrongly).
    Like Ollama, a default SYSTEM is put in front as a system message when none is given."""
    if system and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": system}, *messages]
    pieces = []  # ("text", str) | ("action", str)
    pos = 0
    for m in re.finditer(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", template, re.DOTALL):
        text = template[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        pieces.append(("text", text))
        pieces.append(("action", m.group(2)))
        pos = m.end()
        if m.group(3):
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip())
    pieces.append(("text", template[pos:]))

    def run(items, ctx) -> str:
        out, i = [], 0
        while i < len(items):
            kind, value = items[i]
            if kind == "text":
                out.append(value)
            elif value == "range .Messages":
                depth, j = 1, i + 1
                while depth:
                    if items[j][0] == "action":
                        depth += items[j][1].startswith("range ") - (items[j][1] == "end")
                    j += 1
                body = items[i + 1:j - 1]
                out.extend(run(body, {"Role": m["role"], "Content": m["content"]})
                           for m in messages)
                i = j
                continue
            elif re.fullmatch(r"\.(Role|Content)", value):
                out.append(ctx[value[1:]])
            else:
                raise AssertionError(f"unsupported Go template action {value!r}")
            i += 1
        return "".join(out)

    return run(pieces, {})


def test_renderer_handles_trims():
    """The test's own renderer: trims and range behave like Go's text/template."""
    t = "A  {{- range .Messages }} [{{ .Role }}] {{- .Content -}}  !{{ end }}Z"
    assert render_go_template(t, [{"role": "u", "content": "x"}], None) == "A [u]x!Z"


def test_modelfile_template_matches_chat_template(lora_run, tmp_path):
    """Two-turn conversation, with and without a system turn: TEMPLATE == apply_chat_template;
    stop = <|im_end|> (R14: the model stops); FROM names the GGUF beside it (R15)."""
    from tuneloop.export.ollama import parse_modelfile
    from tuneloop.models import load_tokenizer

    out = tmp_path / "ollama"
    assert main(["export", str(lora_run), "--format", "ollama", "--out", str(out),
                 "--no-progress"]) == 0
    assert {p.name for p in out.iterdir()} == {"Modelfile", "model-f16.gguf", "export.json"}
    spec = parse_modelfile((out / "Modelfile").read_text())
    assert spec["from"] == "./model-f16.gguf"
    assert spec["stops"] == ["<|im_end|>"]
    assert "system" not in spec  # the tiny template has no default system prompt
    tok = load_tokenizer(str(lora_run))
    for convo in (TWO_TURNS, [{"role": "system", "content": "Be brief."}, *TWO_TURNS]):
        want = tok.apply_chat_template(convo, add_generation_prompt=True, tokenize=False)
        assert render_go_template(spec["template"], convo, spec.get("system")) == want


# SmolLM2's template shape: a default system prompt when the conversation brings none.
_DEFAULT_SYSTEM_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_default_system_prompt_becomes_system_line(tiny_tokenizer):
    """A template's built-in system prompt is carried as SYSTEM; rendered through Ollama's rule
    (SYSTEM only when the conversation has none) it matches the Jinja output both ways."""
    from tuneloop.export.ollama import detect_template, modelfile_text, parse_modelfile

    spec = detect_template(tiny_tokenizer, _DEFAULT_SYSTEM_TEMPLATE, ["<|im_end|>"])
    assert spec.family == "chatml" and spec.system == "You are a helpful assistant."
    parsed = parse_modelfile(modelfile_text("m.gguf", spec))
    assert parsed["system"] == "You are a helpful assistant."
    for convo in (TWO_TURNS, [{"role": "system", "content": "Be brief."}, *TWO_TURNS]):
        want = tiny_tokenizer.apply_chat_template(
            convo, chat_template=_DEFAULT_SYSTEM_TEMPLATE, add_generation_prompt=True,
            tokenize=False)
        assert render_go_template(parsed["template"], convo, parsed["system"]) == want


@pytest.mark.parametrize("template", [
    # Alpaca-style (what `template: alpaca` runs train with)
    ("{% for m in messages %}{% if m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n\n"
    "{% else %}### Response:\n{{ m['content'] }}{% endif %}{% endfor %}"),
    # ChatML markers but a different layout (no newline after the role): must not pass as ChatML
    ("{% for m in messages %}<|im_start|>{{ m['role'] }}: {{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant: {% endif %}"),
])
def test_unknown_template_family_is_refused(tiny_tokenizer, template):
    """Anything that is not exactly ChatML: ExportError naming the fix, no wrong TEMPLATE."""
    from tuneloop.export import ExportError
    from tuneloop.export.ollama import detect_template

    with pytest.raises(ExportError, match="not one tuneloop can translate"):
        detect_template(tiny_tokenizer, template, ["<|im_end|>"])
