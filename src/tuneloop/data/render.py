"""Records → token ids + labels: chat template (or Alpaca, or a user Jinja file), assistant-only loss.

Mask strategy: the template is rendered incrementally (the conversation up to each assistant turn,
with and without that turn) so each assistant turn's character span is found from the template's
own output, whatever it looks like; the full text is tokenized once with offsets and a token is
trained when it overlaps an assistant span. The span runs through the end-of-turn token (so
the model learns to stop, R14) and stops before whatever the template adds after it (ChatML's
trailing "\\n"). The ids are exactly `tokenizer(text, add_special_tokens=False).input_ids` (R15).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.data.records import Record
from tuneloop.errors import DataError, ModelError

IGNORE_INDEX = -100

# Alpaca for tokenizers without a chat template: the system prompt is a preamble, each user turn
# an instruction, each answer ends with EOS (trained, so base models learn to stop).
ALPACA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '### Response:\n' + message['content'] + eos_token }}"
    "{% if not loop.last %}{{ '\n\n' }}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)

# Drop reasons (RenderResult.reason); counted and reported by callers, never silent.
ANSWER_CUT = "answer_cut_by_max_length"
NO_TRAINABLE = "no_trainable_tokens"
TEMPLATE_NOT_INCREMENTAL = "template_not_prefix_stable"
TEMPLATE_ERROR = "template_error"  # the template itself refused the conversation (raise_exception)
EMPTY = "empty_record"


@dataclass
class RenderedExample:
    """One training example: ids, labels (-100 = masked), trained-token count, prompt tokens cut."""

    input_ids: list[int]
    labels: list[int]
    n_trained: int
    prompt_truncated: int = 0
    text: str = ""  # the exact text the ids tokenize from (after any truncation)


@dataclass
class RenderResult:
    """A rendered example, or None and the reason it was dropped."""

    example: RenderedExample | None
    reason: str | None = None


@dataclass
class RenderedSet:
    """Examples from many records plus every drop, counted by reason and located (file:line)."""

    examples: list[RenderedExample] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    dropped_where: list[tuple[str, str]] = field(default_factory=list)
    prompt_truncated: int = 0  # records whose prompt side was shortened to fit


class Renderer:
    """Turns records into token ids + labels with one template, the same one used at inference."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        template: str = "auto",
        max_length: int | None = None,
        train_on_prompt: bool = False,
    ):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.train_on_prompt = train_on_prompt
        if max_length is not None and max_length < 2:
            raise ModelError(f"max_length must be at least 2, got {max_length}",
                             fix="pass a larger --max-length")
        self.template_name, self._template = self._pick_template(template)
        if tokenizer.eos_token_id is None:
            raise ModelError("the tokenizer has no EOS token, so answers could not end",
                             fix="use a tokenizer with an eos_token")
        self._eot = self._detect_end_of_turn()

    # -- template choice -------------------------------------------------------------------

    def _pick_template(self, template: str) -> tuple[str, str]:
        own = self.tokenizer.chat_template
        if isinstance(own, dict):  # named templates: the default one is the chat template
            own = own.get("default") or next(iter(own.values()), None)
        if template == "auto":
            return ("chat", own) if own else ("alpaca", self._alpaca())
        if template == "chat":
            if not own:
                raise ModelError("the tokenizer has no chat template",
                                 fix="use --template alpaca, or pass a .jinja template file")
            return "chat", own
        if template == "alpaca":
            return "alpaca", self._alpaca()
        path = Path(template).expanduser()
        if path.suffix in (".jinja", ".j2") or path.exists():
            try:
                return str(path), path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ModelError(f"cannot read template file: {exc.strerror}", where=str(path),
                                 fix="pass an existing Jinja file") from None
        raise ModelError(f"unknown template {template!r}",
                         fix="use auto, chat, alpaca, or a path to a .jinja file")

    def _alpaca(self) -> str:
        """Alpaca, led by BOS when the tokenizer normally adds one (Llama-style base models
        were pretrained with it; ids are tokenized without special tokens, so it must be text)."""
        tok = self.tokenizer
        if tok.bos_token_id is not None and tok.bos_token:
            ids = tok("a").input_ids
            if ids and ids[0] == tok.bos_token_id:
                return "{{ bos_token }}" + ALPACA_TEMPLATE
        return ALPACA_TEMPLATE

    @property
    def template_source(self) -> str:
        """The Jinja source of the template in use (saved beside a trained model)."""
        return self._template

    def _apply(self, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self._template, tokenize=False,
            add_generation_prompt=generation_prompt,
        )

    def _apply_or_raise(self, messages: list[dict[str, str]], *, generation_prompt: bool,
                        where: str | None) -> str:
        """_apply, with a template's refusal turned into a DataError naming the record."""
        from jinja2.exceptions import TemplateError

        try:
            return self._apply(messages, generation_prompt=generation_prompt)
        except TemplateError as exc:
            raise DataError(f"the {self.template_name} template rejects this conversation: {exc}",
                            where=where, fix="fix the roles/order of the messages, or use "
                            "another --template") from None

    def _detect_end_of_turn(self) -> str | None:
        """The special token the template closes an assistant turn with (e.g. <|im_end|>)."""
        probe = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]
        try:
            before = self._apply(probe[:1], generation_prompt=True)
            after = self._apply(probe, generation_prompt=False)
        except Exception as exc:  # noqa: BLE001 - any Jinja error means the template is unusable
            raise ModelError(f"the template fails to render a simple chat: {exc}",
                             where=self.template_name, fix="fix the template") from None
        tail = after.removeprefix(before)
        idx = tail.find("x")
        tail = tail[idx + 1:] if idx >= 0 else tail
        special = set(self.tokenizer.all_special_tokens) | {
            t.content for t in getattr(self.tokenizer, "added_tokens_decoder", {}).values()
            if getattr(t, "special", False)
        }
        first, best = None, len(tail) + 1
        for tok in special:
            pos = tail.find(tok) if tok else -1
            if 0 <= pos < best:
                first, best = tok, pos
        return first or self.tokenizer.eos_token

    @property
    def stop_token_ids(self) -> list[int]:
        """End-of-turn token id(s) then EOS: where generation stops."""
        ids = []
        for tok in (self._eot, self.tokenizer.eos_token):
            tid = self.tokenizer.convert_tokens_to_ids(tok) if tok else None
            if isinstance(tid, int) and tid not in ids:
                ids.append(tid)
        return ids

    # -- rendering ---------------------------------------------------------------------------

    def text(self, record: Record) -> str:
        """The full rendered text of a record (before any truncation)."""
        if record.messages is None:
            return (record.text or "") + self.tokenizer.eos_token
        return self._apply_or_raise(record.messages, generation_prompt=False, where=record.where)

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of the generation prompt: the conversation so far + the assistant header."""
        return self._tokenize(self.prompt_text(messages))[0]

    def prompt_text(self, messages: list[dict[str, str]]) -> str:
        """The generation prompt as text (messages + assistant header)."""
        gen = not messages or messages[-1].get("role") != "assistant"
        return self._apply_or_raise(list(messages), generation_prompt=gen, where=None)

    def _tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def render(self, record: Record) -> RenderResult:
        """Render one record; chat → assistant-only labels, text → all tokens (+EOS) trained."""
        if record.messages is None:
            ids = self._text_ids(record)
            if not ids:
                return RenderResult(None, EMPTY)
            if self.max_length is not None and len(ids) > self.max_length:
                # Long text is split, never cut or dropped: use render_chunks for it.
                return RenderResult(None, "text_longer_than_max_length_use_render_chunks")
            return RenderResult(RenderedExample(ids, list(ids), len(ids), 0, self.text(record)))
        from jinja2.exceptions import TemplateError

        try:
            return self._render_chat(list(record.messages))
        except TemplateError:
            # e.g. a template that rejects system messages or non-alternating roles
            return RenderResult(None, TEMPLATE_ERROR)

    def render_chunks(self, record: Record) -> list[RenderResult]:
        """Like render(), but a text record longer than max_length becomes max_length chunks."""
        if record.messages is not None or self.max_length is None:
            return [self.render(record)]
        ids = self._text_ids(record)
        if not ids:
            return [RenderResult(None, EMPTY)]
        out = []
        for start in range(0, len(ids), self.max_length):
            chunk = ids[start:start + self.max_length]
            out.append(RenderResult(RenderedExample(chunk, list(chunk), len(chunk), 0,
                                                    self.tokenizer.decode(chunk))))
        return out

    def render_all(self, records: Iterable[Record]) -> RenderedSet:
        """Render many records (text split into chunks); drops are counted with file:line."""
        result = RenderedSet()
        for record in records:
            for res in self.render_chunks(record):
                if res.example is None:
                    result.dropped[res.reason or "unknown"] += 1
                    result.dropped_where.append((record.where, res.reason or "unknown"))
                else:
                    result.examples.append(res.example)
                    result.prompt_truncated += res.example.prompt_truncated > 0
        return result

    def segments(self, example: RenderedExample) -> list[tuple[str, bool]]:
        """The example's text as (piece, trained) runs, for showing what the loss sees."""
        out: list[tuple[str, bool]] = []
        run: list[int] = []
        flag = False
        for tid, lab in zip(example.input_ids, example.labels):
            trained = lab != IGNORE_INDEX
            if run and trained != flag:
                out.append((self.tokenizer.decode(run), flag))
                run = []
            run.append(tid)
            flag = trained
        if run:
            out.append((self.tokenizer.decode(run), flag))
        return out

    def _text_ids(self, record: Record) -> list[int]:
        if not record.text:
            return []
        ids = self.tokenizer(record.text, add_special_tokens=False)["input_ids"]
        return list(ids) + [self.tokenizer.eos_token_id]

    def _encode_chat(self, messages: list[dict[str, str]]) -> RenderResult:
        """Render + tokenize + mask, no length limit."""
        text = self._apply(messages, generation_prompt=False)
        spans: list[tuple[int, int]] = []
        for i, msg in enumerate(messages):
            if msg.get("role") != "assistant" or i == 0:
                continue  # an opening assistant message answers nothing: context, not trained
            before = self._apply(messages[:i], generation_prompt=True)
            through = self._apply(messages[: i + 1], generation_prompt=False)
            if not (text.startswith(before) and text.startswith(through)):
                return RenderResult(None, TEMPLATE_NOT_INCREMENTAL)
            turn = through[len(before):]
            # Train through the last end-of-turn token of this turn; what follows it (ChatML's
            # "\n") is template glue, not something the model must generate.
            end = turn.rfind(self._eot) if self._eot else -1
            stop = len(before) + (end + len(self._eot) if end >= 0 else len(turn))
            spans.append((len(before), stop))
        ids, offsets = self._tokenize(text)
        if self.train_on_prompt:
            labels = list(ids)
        else:
            labels = [IGNORE_INDEX] * len(ids)
            for k, (start, end) in enumerate(offsets):
                # Overlap, not containment: a template whose header ends in a space makes the
                # tokenizer merge it into the answer's first token (" The"); that token must
                # still be trained or the answer would lose its first word.
                if any(start < b and end > a for a, b in spans):
                    labels[k] = ids[k]
        n_trained = sum(1 for x in labels if x != IGNORE_INDEX)
        if not spans or n_trained == 0:
            return RenderResult(None, NO_TRAINABLE)
        return RenderResult(RenderedExample(ids, labels, n_trained, 0, text))

    def _render_chat(self, messages: list[dict[str, str]]) -> RenderResult:
        res = self._encode_chat(messages)
        if res.example is None or self.max_length is None:
            return res
        full_len = len(res.example.input_ids)
        if full_len <= self.max_length:
            return res
        # R13: shorten the prompt side first. 1) drop the oldest non-system turns, a whole
        # exchange at a time, while an earlier user turn precedes the last one.
        msgs = list(messages)
        first = next((i for i, m in enumerate(msgs) if m.get("role") != "system"), len(msgs))
        while res.example is not None and len(res.example.input_ids) > self.max_length:
            nxt = next((j for j in range(first + 1, len(msgs)) if msgs[j].get("role") == "user"),
                       None)
            if nxt is None:
                break
            msgs = msgs[:first] + msgs[nxt:]
            res = self._encode_chat(msgs)
        # 2) cut the start of the earliest remaining user message.
        for _ in range(8):  # retokenizing at the cut can shift a token or two; a few tries suffice
            if res.example is None or len(res.example.input_ids) <= self.max_length:
                break
            if first >= len(msgs) or msgs[first].get("role") != "user" or not msgs[first]["content"]:
                return RenderResult(None, ANSWER_CUT)
            content = msgs[first]["content"]
            over = len(res.example.input_ids) - self.max_length
            _cids, coffs = self._tokenize(content)
            if over >= len(coffs):
                cut = ""
            else:
                cut = content[coffs[over][0]:]
            msgs[first] = {**msgs[first], "content": cut}
            res = self._encode_chat(msgs)
        if res.example is None:
            return RenderResult(None, ANSWER_CUT if res.reason == NO_TRAINABLE else res.reason)
        if len(res.example.input_ids) > self.max_length:
            return RenderResult(None, ANSWER_CUT)
        # The final answer must still be there whole: its turn is never touched above, so the
        # last trained token is the end-of-turn token of the last assistant turn.
        res.example.prompt_truncated = full_len - len(res.example.input_ids)
        return res
