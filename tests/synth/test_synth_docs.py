"""`tuneloop synth docs` end to end against a scripted fake server: chunks, judge, provenance."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fake_llm import FakeLLM, spec

from tuneloop.cli import main
from tuneloop.synth.docs import DocsOptions, chunk_text, generate_from_chunks, read_document

DOC = """# Harbour handbook

## Boats

The ferry Gullwing leaves pier 4 at 07:10 every weekday. {pad}
FACT: Gullwing | the ferry that leaves pier 4 at 07:10 | Gullwing

## Radios

Channel 16 is reserved for distress calls only. {pad}
FACT: channel 16 | the radio channel reserved for distress calls | channel 16
"""


def _doc(tmp_path: Path) -> Path:
    path = tmp_path / "handbook.md"
    path.write_text(DOC.format(pad="Staff read this section once a year. " * 4))
    return path


def qa_and_judge(kind: str, text: str, n: int) -> str:
    """Per chunk: one good pair, one unfaithful, one not self-contained, one the judge mumbles."""
    if kind == "qa":
        chunk = text.split('"""')[1]
        name, what, answer = (x.strip() for x in re.search(r"FACT: (.*)", chunk).group(1)
                              .split("|"))
        return (f"Question: What is {what}?\nAnswer: {answer}\n\n"
                f"Question: Which harbour rule mentions {name} at midnight?\n"
                f"Answer: UNFAITHFUL {name} runs at midnight.\n\n"
                f"Question: What does the text say about {name}?\nAnswer: It mentions {name}.\n\n"
                f"Question: MUMBLE when is {name} checked?\nAnswer: Yearly for {name}.")
    if kind == "judge_faithful":
        if "UNFAITHFUL" in text:
            return "The text never says anything happens at midnight. [[NO]]"
        if "MUMBLE" in text:
            return "hmm, maybe"
        return "Stated in the text. [[YES]]"
    if kind == "judge_standalone":
        if "the text" in text.split("Question:")[1]:
            return 'It refers to "the text" without naming it. [[NO]]'
        return "Clear on its own. [[YES]]"
    return ""


def test_docs_rows_carry_spans_and_judge_rejections_carry_reasons(tmp_path):
    """Two heading sections → two chunks; each kept pair points at its exact chunk span; each
    judge rejection keeps the judge's reason; an answer without a verdict is counted apart,
    never scored (R18)."""
    doc = _doc(tmp_path)
    out = tmp_path / "out"
    fake = FakeLLM(qa_and_judge)
    with fake.serve() as url:
        rc = main(["synth", "docs", str(doc), "--generator", spec(url), "--out", str(out),
                   "--chunk-words", "60", "--overlap", "5", "--questions", "4",
                   "--no-progress"])
    assert rc == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["chunks"] == 2 and stats["accepted"] == 2
    assert stats["rejected"] == {"unfaithful": 2, "not_self_contained": 2,
                                 "judge_unparseable": 2}
    assert stats["requests"]["by_kind"] == {"qa": 2, "judge": 16}
    assert stats["machine_share"] == 1.0

    text = read_document(doc)
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    assert [r["messages"][1]["content"] for r in rows] == ["Gullwing", "channel 16"]
    for r, heading in zip(rows, ["Harbour handbook", "Radios"]):
        m = r["meta"]
        start, end = m["span"]
        assert m["source"] == "machine" and m["document"] == str(doc)
        assert m["heading"] == heading and r["messages"][1]["content"] in text[start:end]
        assert len(m["judge_request_ids"]) == 2 and m["request_id"].startswith("req-")
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    unfaithful = [r for r in rejects if r["reason"] == "unfaithful"]
    assert unfaithful[0]["judge_reason"] == "The text never says anything happens at midnight."
    assert unfaithful[0]["chunk"] == 0 and "midnight" in unfaithful[0]["answer"]
    assert {r["judge_reason"] for r in rejects if r["reason"] == "not_self_contained"} == {
        'It refers to "the text" without naming it.'}


def test_focus_and_avoid_for_targeted_rounds(tmp_path):
    """Library entry for `iterate`: the focus text reaches the prompt; a question too close to
    an avoided text (e.g. an eval suite's question) is never kept."""
    doc = _doc(tmp_path)
    chunks = chunk_text(read_document(doc), str(doc), chunk_words=60, overlap=5)
    fake = FakeLLM(qa_and_judge)
    with fake.serve() as url:
        stats = generate_from_chunks(
            chunks[:1], spec(url), tmp_path / "o", options=DocsOptions(questions=1,
                                                                        progress=False),
            focus="departure times", avoid=["What is the ferry that leaves pier 4 at 07:10?"])
    assert stats["accepted"] == 0
    assert stats["rejected"] == {"too_similar_to_avoided": 1, "over_question_limit": 3}
    assert "Focus on: departure times" in fake.log[0][1]
    assert fake.kinds["judge_faithful"] == 0  # nothing judged, nothing paid for


def test_chunks_cut_at_headings_with_overlap_inside_sections():
    """Chunks follow headings; a long section is cut with `overlap` words repeated."""
    text = "# A\n\n" + " ".join(f"a{i}" for i in range(50)) + "\n\n# B\n\n" + \
        " ".join(f"b{i}" for i in range(130))
    chunks = chunk_text(text, "d", chunk_words=60, overlap=10)
    assert [c.heading for c in chunks] == ["A", "B", "B", "B"]
    assert chunks[0].text.endswith("a49") and chunks[1].text.startswith("# B")
    for c in chunks:
        assert text[c.start:c.end] == c.text
    words1, words2 = chunks[1].text.split(), chunks[2].text.split()
    assert words2[:10] == words1[-10:]


def test_pdf_documents_are_read(tmp_path):
    """A PDF goes through pypdf's text extraction."""
    import pypdf
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = pypdf.PdfWriter()
    page = writer.add_blank_page(width=300, height=200)
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"),
                             NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject(
        {NameObject("/F1"): writer._add_object(font)})})
    stream = DecodedStreamObject()
    stream.set_data(b"BT /F1 12 Tf 20 100 Td (Pier 4 opens at dawn.) Tj ET")
    page[NameObject("/Contents")] = writer._add_object(stream)
    path = tmp_path / "doc.pdf"
    with open(path, "wb") as fh:
        writer.write(fh)
    assert "Pier 4 opens at dawn." in read_document(path)


def test_unsupported_document_is_a_clean_error(tmp_path, capsys):
    """A .docx is refused with the supported types named."""
    bad = tmp_path / "notes.docx"
    bad.write_bytes(b"PK")
    rc = main(["synth", "docs", str(bad), "--generator", "openai:http://127.0.0.1:9/v1#x",
               "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc != 0 and "notes.docx" in err and "PDF" in err and "Traceback" not in err


def test_separate_judge_spends_from_the_same_budget(tmp_path):
    """--judge on another server: it judges every pair, and --max-requests counts its requests
    too (a budget that cannot cover a chunk's judging stops before sending them)."""
    doc = _doc(tmp_path)
    writer, judge = FakeLLM(qa_and_judge), FakeLLM(qa_and_judge)
    with writer.serve() as wurl, judge.serve() as jurl:
        stats = generate_from_chunks(
            chunk_text(read_document(doc), str(doc), 60, 5), spec(wurl), tmp_path / "a",
            judge=spec(jurl), options=DocsOptions(questions=2, progress=False))
        assert writer.kinds == {"qa": 2} and judge.kinds["judge_faithful"] == 4
        assert stats["requests"]["total"] == 10 and stats["accepted"] == 2
        rows = [json.loads(x) for x in (tmp_path / "a" / "train.jsonl").read_text().splitlines()]
        assert rows[0]["meta"]["judge"] == f"openai:{jurl}/v1#fake"
        writer.reset()
        judge.reset()
        capped = generate_from_chunks(
            chunk_text(read_document(doc), str(doc), 60, 5), spec(wurl), tmp_path / "b",
            judge=spec(jurl), options=DocsOptions(questions=2, max_requests=6, progress=False))
    assert capped["stopped"] == "budget" and capped["requests"]["total"] == 6
    assert writer.total == 2 and judge.total == 4  # chunk 2's judging (4) did not fit in 6
