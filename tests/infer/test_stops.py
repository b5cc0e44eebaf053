"""The one stop-string matcher (infer.stops.StopText) used by batched, streaming and served generation."""

from __future__ import annotations

from tuneloop.infer.stops import StopText, earliest_stop, held_suffix


def _feed(stops, tokens):
    """Feed token texts one at a time like the decoder does; (released pieces, matcher)."""
    st, text, pieces = StopText(stops), "", []
    for tok in tokens:
        text += tok
        pieces.append(st.update(text))
        if st.stopped:
            break
    return pieces, st, text


def test_stop_string_spanning_tokens_is_cut_and_never_shown():
    pieces, st, _ = _feed(["</ans>"], ["The answer", " is 4", "</", "an", "s>", " more"])
    assert st.stopped and st.text == "The answer is 4"
    assert "".join(pieces) == "The answer is 4"
    assert all("<" not in p for p in pieces)  # the stop's start was held, then dropped


def test_hold_back_is_released_when_it_turns_out_not_to_be_a_stop():
    pieces, st, text = _feed(["END"], ["abc", "E", "N", "X"])
    assert pieces == ["abc", "", "", "ENX"] and not st.stopped
    assert st.close(text) == "" and st.text == "abcENX"


def test_held_text_is_flushed_when_generation_ends_for_another_reason():
    pieces, st, text = _feed(["END"], ["abc", "EN"])
    assert "".join(pieces) == "abc"
    assert st.close(text) == "EN"  # end-of-turn / length: the held prefix was real text
    assert st.text == "abcEN" and not st.stopped
    assert st.close(text) == ""  # released once


def test_several_stops_cut_at_the_earliest():
    _, st, _ = _feed(["world", "lo w", "xyz"], ["hello world"])
    assert st.text == "hel"
    assert earliest_stop("a-b+c", ["+", "-"]) == 1 and earliest_stop("abc", ["x"]) == -1
    # Two candidate stops both pending: the longer hold wins.
    assert held_suffix("xab", ["abc", "bq"]) == 2


def test_unicode_partial_characters_and_multibyte_stops():
    # Half a UTF-8 character decodes to U+FFFD: never streamed, replaced once complete.
    st2 = StopText(["。"])
    assert st2.update("日本") == "日本" and st2.update("日本\ufffd") == ""
    assert st2.update("日本語") == "語"
    assert st2.update("日本語。です") == "" and st2.stopped and st2.text == "日本語"
    # Emoji and accents around a stop spanning pieces.
    _, st3, _ = _feed(["🛑 "], ["café ", "🛑", " x"])
    assert st3.text == "café " and st3.stopped


def test_no_stops_passes_everything_through():
    st = StopText([])
    assert st.update("ab") == "ab" and st.update("abc") == "c" and st.close("abcd") == "d"
    assert st.text == "abcd" and not st.stopped
