"""A multi-turn terminal chat: reads lines, streams the reply, keeps the history.

Commands: `/reset` (forget the conversation), `/system TEXT` (new system prompt, fresh
conversation), `/exit` (or end of input). The prompt is rendered with the model's training
template and generation stops at its end-of-turn token, like every other generating path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tuneloop.infer.decode import Decoder
from tuneloop.infer.generate import stream_generate

HELP = "commands: /reset  /system TEXT  /exit"


def run_chat(
    model: Any,
    tokenizer: Any,
    renderer: Any,
    *,
    lines: Iterable[str],
    out: TextIO,
    system: str | None = None,
    interactive: bool = False,
    **gen_kwargs: Any,
) -> list[dict[str, str]]:
    """Run the REPL over `lines`, writing streamed replies to `out`; returns the last history."""
    # One decoder for the session: each turn's prompt extends the last, whose cache it reuses.
    decoder = Decoder(model, tokenizer, renderer.stop_token_ids)

    def fresh() -> list[dict[str, str]]:
        return [{"role": "system", "content": system}] if system else []

    history = fresh()
    if interactive:
        out.write(f"{HELP}\n")
        out.flush()
    for raw in lines:
        line = raw.rstrip("\r\n")
        text = line.strip()
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            history = fresh()
            out.write("(conversation reset)\n")
        elif text == "/system" or text.startswith("/system "):
            system = text[len("/system"):].strip() or None
            history = fresh()
            out.write(f"(system prompt {'set' if system else 'cleared'}; conversation reset)\n")
        elif text.startswith("/"):
            out.write(f"unknown command {text.split()[0]!r}; {HELP}\n")
        elif text:
            history.append({"role": "user", "content": line})
            stream = stream_generate(model, tokenizer, renderer, history, decoder=decoder,
                                     **gen_kwargs)
            for piece in stream:
                out.write(piece)
                out.flush()
            out.write("\n")
            if stream.finish_reason == "length":
                out.write("(reply cut at --max-new-tokens)\n")
            history.append({"role": "assistant", "content": stream.text})
        out.flush()
    return history


def terminal_lines(prompt: str = "> ") -> Iterator[str]:
    """Lines typed at a terminal, with line editing and history (readline), until Ctrl-D."""
    try:
        import readline  # noqa: F401 - importing it gives input() editing and history
    except ImportError:  # not on every platform; plain input() still works
        pass
    while True:
        try:
            yield input(prompt)
        except EOFError:
            print()
            return
