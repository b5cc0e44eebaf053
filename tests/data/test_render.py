"""Templates and loss mask: assistant-only labels with end-of-turn, round trip, truncation."""

from __future__ import annotations

import copy
import functools
import operator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneloop.data.records import Record
from tuneloop.data.render import ALPACA_TEMPLATE, ANSWER_CUT, NO_TRAINABLE, Renderer
from tuneloop.errors import ModelError

IM_END = "<|im_end|>"


def trained_text(tok, ex) -> str:
    """Decode only the trained positions (in order)."""
    return tok.decode([i for i, lab in zip(ex.input_ids, ex.labels) if lab != -100])


def trained_runs(ex) -> list[list[int]]:
    """Contiguous runs of trained token ids."""
    runs, cur = [], []
    for i, lab in zip(ex.input_ids, ex.labels):
        if lab != -100:
            cur.append(i)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs


CONV = Record.chat(
    ("system", "You are a helpful assistant."),
    ("user", "What is the capital of France?"),
    ("assistant", "The capital of France is Paris."),
    ("user", "Translate to French: good morning."),
    ("assistant", "Bonjour."),
)


def test_labels_cover_exactly_assistant_content_and_end_of_turn(tiny_tokenizer):
    """R14, R15: each assistant turn's content + <|im_end|> is trained, nothing else; ids round-trip."""
    r = Renderer(tiny_tokenizer)
    ex = r.render(CONV).example
    assert ex is not None and r.template_name == "chat"
    assert tiny_tokenizer(ex.text, add_special_tokens=False).input_ids == ex.input_ids
    assert ex.text == tiny_tokenizer.apply_chat_template(CONV.messages, tokenize=False)
    runs = [tiny_tokenizer.decode(run) for run in trained_runs(ex)]
    assert runs == ["The capital of France is Paris." + IM_END, "Bonjour." + IM_END]
    im_end = tiny_tokenizer.convert_tokens_to_ids(IM_END)
    # Every <|im_end|> closing an assistant turn is trained; those closing user/system are not.
    ends = [k for k, i in enumerate(ex.input_ids) if i == im_end]
    assert [ex.labels[k] != -100 for k in ends] == [False, False, True, False, True]
    # The "\n" after the final <|im_end|> is template glue, not trained.
    assert ex.labels[-1] == -100 and ex.input_ids[-2] == im_end and ex.labels[-2] == im_end
    assert ex.n_trained == sum(len(run) for run in trained_runs(ex))
    assert r.stop_token_ids == [im_end]


def test_train_on_prompt_trains_every_token(tiny_tokenizer):
    """Option: loss on the prompt too."""
    ex = Renderer(tiny_tokenizer, train_on_prompt=True).render(CONV).example
    assert ex.labels == ex.input_ids and ex.n_trained == len(ex.input_ids)


def test_prompt_ids_match_generation_prompt(tiny_tokenizer):
    """R15: generation uses the training template with the assistant header appended."""
    r = Renderer(tiny_tokenizer)
    msgs = CONV.messages[:2]
    expected = tiny_tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert r.prompt_text(msgs) == expected
    assert r.prompt_ids(msgs) == tiny_tokenizer(expected, add_special_tokens=False).input_ids
    full = r.render(Record(messages=CONV.messages[:3])).example
    # The prompt is a token prefix of the training example, and the first trained token follows it.
    prompt = r.prompt_ids(msgs)
    assert full.input_ids[: len(prompt)] == prompt
    assert full.labels[len(prompt) - 1] == -100 and full.labels[len(prompt)] != -100


def _no_template(tok):
    tok = copy.deepcopy(tok)
    tok.chat_template = None
    return tok


def test_alpaca_for_tokenizers_without_chat_template(tiny_tokenizer):
    """R14: base models get Alpaca; the EOS after each answer is trained."""
    tok = _no_template(tiny_tokenizer)
    r = Renderer(tok)
    assert r.template_name == "alpaca" and r.template_source == ALPACA_TEMPLATE
    ex = r.render(CONV).example
    assert ex.text == (
        "You are a helpful assistant.\n\n### Instruction:\nWhat is the capital of France?\n\n"
        "### Response:\nThe capital of France is Paris." + tok.eos_token + "\n\n"
        "### Instruction:\nTranslate to French: good morning.\n\n### Response:\nBonjour."
        + tok.eos_token
    )
    assert tok(ex.text, add_special_tokens=False).input_ids == ex.input_ids
    assert [tok.decode(x) for x in trained_runs(ex)] == [
        "The capital of France is Paris." + tok.eos_token, "Bonjour." + tok.eos_token]
    assert r.prompt_text(CONV.messages[1:2]).endswith("### Response:\n")
    with pytest.raises(ModelError, match="no chat template"):
        Renderer(tok, template="chat")


def test_user_jinja_template(tiny_tokenizer, tmp_path):
    """A user Jinja file is used as-is and is what template_source returns (saved with the model)."""
    src = ("{% for m in messages %}[{{ m['role'] }}]:{{ '\\n' + m['content'] }}"
           "{% if m['role'] == 'assistant' %}<|im_end|>{% endif %}{{ '\\n' }}{% endfor %}"
           "{% if add_generation_prompt %}[assistant]:{{ '\\n' }}{% endif %}")
    path = tmp_path / "t.jinja"
    path.write_text(src)
    r = Renderer(tiny_tokenizer, template=str(path))
    assert r.template_source == src and r.template_name == str(path)
    ex = r.render(CONV).example
    assert ex.text.startswith("[system]:\nYou are a helpful assistant.\n[user]:\n")
    assert trained_text(tiny_tokenizer, ex) == (
        "The capital of France is Paris.<|im_end|>Bonjour.<|im_end|>")
    # A header ending in a space merges into the answer's first token: that token is trained.
    spaced = tmp_path / "spaced.jinja"
    spaced.write_text(src.replace(":{{ '\\n' + m['content'] }}", ": {{ m['content'] }}")
                      .replace("[assistant]:{{ '\\n' }}", "[assistant]: "))
    ex = Renderer(tiny_tokenizer, template=str(spaced)).render(CONV).example
    assert trained_text(tiny_tokenizer, ex).startswith(" The capital of France is Paris.")
    with pytest.raises(ModelError, match="cannot read template"):
        Renderer(tiny_tokenizer, template=str(tmp_path / "missing.jinja"))


def test_no_assistant_turn_is_dropped_not_all_masked(tiny_tokenizer):
    """R13: never an example with all labels masked."""
    res = Renderer(tiny_tokenizer).render(Record.chat(("user", "hello")))
    assert res.example is None and res.reason == NO_TRAINABLE
    # An opening assistant greeting answers nothing: it is context, not trained.
    r = Renderer(tiny_tokenizer)
    assert r.render(Record.chat(("assistant", "Hello!"))).reason == NO_TRAINABLE
    ex = r.render(Record.chat(("assistant", "Hello!"), ("user", "hi"), ("assistant", "Paris."))).example
    assert trained_text(tiny_tokenizer, ex) == "Paris." + IM_END


def test_truncation_drops_old_turns_then_cuts_user_start(tiny_tokenizer):
    """R13: the prompt side is shortened first; the final answer stays whole."""
    full = Renderer(tiny_tokenizer).render(CONV).example
    last_turn = Renderer(tiny_tokenizer).render(
        Record(messages=[CONV.messages[0], *CONV.messages[3:]])).example
    r = Renderer(tiny_tokenizer, max_length=len(last_turn.input_ids))
    ex = r.render(CONV).example
    assert ex.input_ids == last_turn.input_ids
    assert ex.prompt_truncated == len(full.input_ids) - len(last_turn.input_ids)
    # Tighter: the remaining user message loses its start, the answer is intact.
    r = Renderer(tiny_tokenizer, max_length=len(last_turn.input_ids) - 4)
    ex = r.render(CONV).example
    assert len(ex.input_ids) <= len(last_turn.input_ids) - 4
    assert trained_text(tiny_tokenizer, ex) == "Bonjour." + IM_END
    assert "good morning." in ex.text and "Translate" not in ex.text
    assert tiny_tokenizer(ex.text, add_special_tokens=False).input_ids == ex.input_ids


def test_answer_that_cannot_fit_is_dropped(tiny_tokenizer):
    """R13: when the final answer + end-of-turn cannot fit, drop with a reason."""
    rec = Record.chat(("user", "hi"), ("assistant", "The quick brown fox jumps over the lazy dog. " * 4))
    res = Renderer(tiny_tokenizer, max_length=12).render(rec)
    assert res.example is None and res.reason == ANSWER_CUT


conversation = st.lists(
    st.tuples(st.text("abc xyz.?\n", min_size=0, max_size=30),
              st.text("The sea is blue.\n", min_size=0, max_size=40)),
    min_size=1, max_size=4,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(turns=conversation, system=st.booleans(), max_length=st.integers(4, 80))
def test_truncation_property(tiny_tokenizer, turns, system, max_length):
    """R13, R14, R15: dropped with a reason, or fits, round-trips, and ends training on the answer."""
    msgs = [{"role": "system", "content": "You are a helpful assistant."}] if system else []
    for u, a in turns:
        msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    res = Renderer(tiny_tokenizer, max_length=max_length).render(Record(messages=msgs))
    if res.example is None:
        assert res.reason == ANSWER_CUT
        return
    ex = res.example
    assert len(ex.input_ids) <= max_length and ex.n_trained > 0
    assert tiny_tokenizer(ex.text, add_special_tokens=False).input_ids == ex.input_ids
    assert trained_runs(ex)[-1] == tiny_tokenizer(turns[-1][1] + IM_END,
                                                  add_special_tokens=False).input_ids


def test_text_records_train_all_tokens_and_split_long_text(tiny_tokenizer):
    """Continued pretraining: text + EOS all trained; long text is split, not dropped or cut."""
    text = "The quick brown fox jumps over the lazy dog. " * 5
    rec = Record(text=text)
    ids = tiny_tokenizer(text, add_special_tokens=False).input_ids + [tiny_tokenizer.eos_token_id]
    ex = Renderer(tiny_tokenizer).render(rec).example
    assert ex.input_ids == ids and ex.labels == ids and ex.n_trained == len(ids)
    r = Renderer(tiny_tokenizer, max_length=16)
    assert r.render(rec).example is None
    chunks = [c.example for c in r.render_chunks(rec)]
    assert all(len(c.input_ids) <= 16 for c in chunks)
    assert functools.reduce(operator.iadd, (c.input_ids for c in chunks), []) == ids


def test_render_all_counts_drops_with_location(tiny_tokenizer):
    """R12-style accounting: every record is rendered or counted as dropped, with file:line."""
    recs = [CONV, Record.chat(("user", "x"), source="d.jsonl", line=7),
            Record(text="The sea is blue. " * 10)]
    out = Renderer(tiny_tokenizer, max_length=16).render_all(recs)
    assert out.dropped == {ANSWER_CUT: 1, NO_TRAINABLE: 1}
    assert ("d.jsonl:7", NO_TRAINABLE) in out.dropped_where
    n_text = len(tiny_tokenizer("The sea is blue. " * 10, add_special_tokens=False).input_ids) + 1
    assert n_text > 16 and len(out.examples) == -(-n_text // 16)  # the text became its chunks


@pytest.mark.integration
def test_embedded_model_template_mask_round_trip():
    """R14, R15 on the embedded SmolLM2 tokenizer: labels = assistant content + <|im_end|>."""
    from tuneloop.models import EMBEDDED_ALIAS, load_tokenizer

    tok = load_tokenizer(EMBEDDED_ALIAS)
    r = Renderer(tok)
    records = [
        Record.chat(("user", "What is 2+2?"), ("assistant", "2+2 equals 4.")),
        Record.chat(("system", "Answer briefly."), ("user", "Capital of France?"),
                    ("assistant", "Paris."), ("user", "And Italy?"), ("assistant", "Rome.")),
        Record.chat(("user", "Write a haiku about autumn."),
                    ("assistant", ("Leaves drift slowly down,\ncrisp air hums a quiet song,\n"
                     "the year exhales gold."))),
    ]
    for rec in records:
        ex = r.render(rec).example
        assert tok(ex.text, add_special_tokens=False).input_ids == ex.input_ids
        answers = [m["content"] + IM_END for m in rec.messages if m["role"] == "assistant"]
        assert [tok.decode(run) for run in trained_runs(ex)] == answers
    # SmolLM's template adds its default system prompt when none is given.
    assert "named SmolLM" in r.text(records[0])
    assert r.stop_token_ids == [tok.convert_tokens_to_ids(IM_END)]


def test_template_that_refuses_a_conversation(tiny_tokenizer, tmp_path):
    """A template's raise_exception is a counted drop in render, a DataError in prompts."""
    from tuneloop.data.render import TEMPLATE_ERROR
    from tuneloop.errors import DataError

    path = tmp_path / "nosys.jinja"
    path.write_text("{% for m in messages %}{% if m['role'] == 'system' %}"
                    "{{ raise_exception('System role not supported') }}{% endif %}"
                    "{{ m['role'] + ': ' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
                    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")
    r = Renderer(tiny_tokenizer, template=str(path))
    assert r.render(CONV).reason == TEMPLATE_ERROR
    assert r.render(Record(messages=CONV.messages[1:])).example is not None
    with pytest.raises(DataError, match="System role not supported"):
        r.prompt_ids(CONV.messages[:2])


def test_alpaca_keeps_bos_for_tokenizers_that_add_it(tiny_tokenizer):
    """Llama-style base tokenizers add BOS; the Alpaca text then starts with it (R15 still holds)."""
    from tokenizers.processors import TemplateProcessing

    tok = _no_template(tiny_tokenizer)
    tok.bos_token = "<|im_start|>"
    tok._tokenizer.post_processor = TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", tok.bos_token_id)])
    assert tok("a").input_ids[0] == tok.bos_token_id
    r = Renderer(tok, template="alpaca")
    ex = r.render(CONV).example
    assert ex.input_ids[0] == tok.bos_token_id and ex.text.startswith("<|im_start|>You are")
    assert tok(ex.text, add_special_tokens=False).input_ids == ex.input_ids
    assert r.prompt_ids(CONV.messages[:2])[0] == tok.bos_token_id
