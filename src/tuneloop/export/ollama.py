"""`--format ollama`: the GGUF plus a Modelfile whose TEMPLATE and stops come from the model.

Ollama does not run Jinja; a Modelfile's TEMPLATE is a Go template over `.Messages`. A wrong one
makes a fine model babble (no turn markers) or never stop (no stop token), so the family is
detected from the model's own chat template — its Jinja text plus rendered probes — and the
export refuses families it cannot translate exactly instead of writing a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneloop.export.source import ExportError

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

# ChatML over Ollama's message list. Ollama puts the Modelfile's SYSTEM in front as a system
# message when the conversation has none, which is how a template's default system prompt is kept.
CHATML_GO_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    "{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)


@dataclass
class OllamaTemplate:
    """What the Modelfile needs: Go TEMPLATE, default SYSTEM (or None), stop strings."""

    family: str
    template: str
    system: str | None
    stops: list[str]


def _chatml(messages: list[dict[str, str]], generation_prompt: bool) -> str:
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    return text + (f"{IM_START}assistant\n" if generation_prompt else "")


def _render(tokenizer: Any, template: str, messages: list[dict[str, str]], gen: bool) -> str:
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=gen)


def detect_template(tokenizer: Any, template: str, stop_tokens: list[str]) -> OllamaTemplate:
    """Translate TEMPLATE (Jinja) to Ollama's Go template, or raise ExportError if unknown."""
    convo = [{"role": "user", "content": "Hi there"},
             {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "Name a colour."}]
    with_system = [{"role": "system", "content": "Be brief."}, *convo]
    if IM_START in template and IM_END in template:
        try:
            plain = _render(tokenizer, template, convo, True)
            own_system = _render(tokenizer, template, with_system, True)
            closed = _render(tokenizer, template, convo[:2], False)
        except Exception as exc:  # noqa: BLE001 - any Jinja error: the template is unusable
            raise ExportError(f"the chat template fails on a simple conversation: {exc}",
                              fix="fix the model's chat template") from None
        system = None
        if plain != _chatml(convo, True) and plain.startswith(f"{IM_START}system\n"):
            # A default system prompt the template adds when the conversation has none.
            head = plain[len(f"{IM_START}system\n"):]
            system = head[:head.find(IM_END)] if IM_END in head else None
        expected = _chatml(([{"role": "system", "content": system}] if system else []) + convo, True)
        if (plain == expected and own_system == _chatml(with_system, True)
                and closed.startswith(_chatml(([{"role": "system", "content": system}]
                                               if system else []) + convo[:2], False))):
            stops = [IM_END] + [s for s in stop_tokens if s and s != IM_END]
            return OllamaTemplate("chatml", CHATML_GO_TEMPLATE, system, stops)
    raise ExportError(
        "the model's chat template is not one tuneloop can translate to an Ollama TEMPLATE "
        f"(recognised: ChatML); it starts {template[:120]!r}",
        fix="export --format gguf and write the Modelfile's TEMPLATE by hand "
        "(https://github.com/ollama/ollama/blob/main/docs/template.md)")


def _quote(text: str) -> str:
    if '"""' in text:
        raise ExportError('the text contains """, which a Modelfile cannot quote',
                          fix="remove it from the chat template's default system prompt")
    return f'"""{text}"""'


def modelfile_text(gguf_file: str, spec: OllamaTemplate) -> str:
    """The Modelfile for a GGUF beside it (FROM ./file), with TEMPLATE, SYSTEM and stops."""
    lines = [f"FROM ./{gguf_file}", f"TEMPLATE {_quote(spec.template)}"]
    if spec.system:
        lines.append(f"SYSTEM {_quote(spec.system)}")
    for stop in spec.stops:
        lines.append(f"PARAMETER stop {_go_string(stop)}")
    return "\n".join(lines) + "\n"


def _go_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_modelfile(text: str) -> dict[str, Any]:
    """FROM, TEMPLATE, SYSTEM and stop values of a Modelfile written by modelfile_text."""
    import re

    out: dict[str, Any] = {"stops": []}
    for key in ("FROM", "TEMPLATE", "SYSTEM"):
        m = re.search(rf'^{key} (?:"""(.*?)"""|(\S+))', text, re.DOTALL | re.MULTILINE)
        if m:
            out[key.lower()] = m.group(1) if m.group(1) is not None else m.group(2)
    for m in re.finditer(r'^PARAMETER stop "((?:[^"\\]|\\.)*)"', text, re.MULTILINE):
        out["stops"].append(re.sub(r"\\(.)", r"\1", m.group(1)))
    return out
