"""Document-grounded Q/A: documents → chunks (by headings, ~N words, overlap) → judged pairs.

Per chunk the generator writes question/answer pairs from that chunk only. Each pair is then
checked by the judge twice: is the answer faithful to the chunk, and does the question stand on
its own (answerable without seeing the chunk)? Pairs failing either check, repeating a kept
question word for word, or too similar (ROUGE-L > threshold) to a text the caller wants avoided
go to rejects.jsonl with the reason. Kept rows record their document, chunk and character span.

`generate_from_chunks` is the library entry point (`tuneloop iterate` passes the chunks and a
`focus` describing what failed); `run_docs` reads and chunks files first.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.backends import Generator, GenParams, Messages
from tuneloop.errors import DataError, ModelError, UsageError
from tuneloop.eval.judge import TOP_LOGPROBS
from tuneloop.eval.judge_probs import YESNO_PREFIX, verdict_distribution
from tuneloop.synth import filters, prompts
from tuneloop.synth.novelty import THRESHOLD, NoveltyPool
from tuneloop.synth.run import (
    BudgetSpent,
    OutGuard,
    Reply,
    Requester,
    SynthRun,
    backend_failure,
    open_generator,
    progress_bar,
)
from tuneloop.synth.stats import SynthStats

PROMPTS = ["docs_qa", "judge_faithful", "judge_standalone"]
TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".rst", ".text"}
REPEAT_THRESHOLD = 0.999  # ROUGE-L F1 of 1.0: the same tokens in the same order
_HEADING_RE = re.compile(r"(?m)^(#{1,6})[ \t]+(\S.*)$")


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: its text is `document_text[start:end]`."""

    document: str
    index: int
    start: int
    end: int
    text: str
    heading: str


def read_document(path: str | Path) -> str:
    """Text of a Markdown/plain-text file, or of a PDF (pypdf's text extraction)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError("document not found", where=str(p), fix="pass existing files")
    suffix = p.suffix.lower()
    if suffix == ".pdf":
        import pypdf

        try:
            reader = pypdf.PdfReader(str(p))
            return "\n\n".join((page.extract_text() or "") for page in reader.pages)
        except pypdf.errors.PyPdfError as exc:
            raise DataError(f"cannot read PDF: {exc}", where=str(p),
                            fix="re-export the PDF or convert it to text") from None
    if suffix not in TEXT_SUFFIXES:
        raise UsageError(f"unsupported document type {suffix or '(none)'!r}", where=str(p),
                         fix="pass Markdown (.md), plain text (.txt) or PDF files")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 (byte {exc.start})", where=str(p),
                        fix="re-save the file as UTF-8") from None


def chunk_text(text: str, document: str, chunk_words: int = 1000, overlap: int = 100
               ) -> list[Chunk]:
    """Split at headings into chunks of about `chunk_words` words.

    Sections are packed together while they fit; a cut prefers the last heading in the second
    half of the window, and a cut inside a section (no heading near) repeats `overlap` words at
    the start of the next chunk so no fact is split without context.
    """
    if chunk_words < 20 or not 0 <= overlap < chunk_words // 2:
        raise UsageError(f"need --chunk-words ≥ 20 and 0 ≤ --overlap < chunk-words/2 (got "
                         f"{chunk_words}, {overlap})")
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if not words:
        return []
    heads = [(m.start(), m.group(2).strip()) for m in _HEADING_RE.finditer(text)]
    starts = [w[0] for w in words]
    import bisect

    # word index at which each heading begins
    boundaries = sorted({bisect.bisect_left(starts, pos) for pos, _ in heads} - {0})
    chunks: list[Chunk] = []
    i = 0
    while i < len(words):
        end = min(len(words), i + chunk_words)
        cut_at_heading = end == len(words)
        if not cut_at_heading:
            lo = bisect.bisect_right(boundaries, i + chunk_words // 2)
            hi = bisect.bisect_right(boundaries, end)
            if hi > lo:
                end = boundaries[hi - 1]
                cut_at_heading = True
        s, e = words[i][0], words[end - 1][1]
        h = [t for pos, t in heads if pos <= s]
        chunks.append(Chunk(document, len(chunks), s, e, text[s:e], h[-1] if h else ""))
        if end >= len(words):
            break
        i = end if cut_at_heading else end - overlap
    return chunks


def chunk_documents(paths: Sequence[str | Path], chunk_words: int = 1000, overlap: int = 100
                    ) -> list[Chunk]:
    """Chunks of every document, in order (an empty document gives none: see `read_chunks`)."""
    return read_chunks(paths, chunk_words, overlap)[0]


def read_chunks(paths: Sequence[str | Path], chunk_words: int = 1000, overlap: int = 100
                ) -> tuple[list[Chunk], list[dict[str, Any]]]:
    """Chunks of every document, in order, and the documents skipped because they hold no text
    (each `{"document", "reason": "empty_document"}`), so they can be reported, not lost."""
    out: list[Chunk] = []
    skipped: list[dict[str, Any]] = []
    for path in paths:
        chunks = chunk_text(read_document(path), str(path), chunk_words, overlap)
        if not chunks:
            skipped.append({"document": str(path), "reason": "empty_document"})
        out.extend(chunks)
    return out, skipped


def heading_only(chunk: Chunk) -> bool:
    """Whether a chunk holds nothing but Markdown headings (no text to ask about)."""
    return not re.search(r"\w", _HEADING_RE.sub("", chunk.text))


def parse_pairs(answer: str) -> list[tuple[str, str]]:
    """(question, answer) pairs from `Question:` / `Answer:` blocks."""
    pairs = []
    for m in re.finditer(r"(?ims)^[ \t]*(?:\d+[.)][ \t]*)?\**Q(?:uestion)?\s*\d*\**[ \t]*:\**(.*?)"
                         r"^[ \t]*\**A(?:nswer)?\s*\d*\**[ \t]*:\**(.*?)"
                         r"(?=^[ \t]*(?:\d+[.)][ \t]*)?\**Q(?:uestion)?\s*\d*\**[ \t]*:|\Z)",
                         answer):
        q, a = " ".join(m.group(1).split()), m.group(2).strip()
        pairs.append((q, a))
    return pairs


@dataclass
class DocsOptions:
    """Settings of one document run (every field is a CLI option)."""

    questions: int = 3
    chunk_words: int = 1000
    overlap: int = 100
    threshold: float = THRESHOLD
    max_requests: int | None = None
    max_tokens: int = 512
    judge_max_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    prompt_dir: str | None = None
    progress: bool = True


def generate_from_chunks(chunks: Sequence[Chunk], generator: str | dict | Generator,
                         out: str | Path, *, judge: str | dict | Generator | None = None,
                         options: DocsOptions | None = None, focus: str | None = None,
                         avoid: Sequence[str] = (),
                         skipped_inputs: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Judged Q/A rows for `chunks` into `out` (resumable); returns the stats written.

    `focus`: text appended to the generation prompt (topics or failed questions to target);
    `avoid`: texts no kept question may be a near-copy of (ROUGE-L > threshold), e.g. an eval
    suite's own questions, so targeted data never leaks the test set. A chunk holding only
    headings is not sent; it is listed in the stats' `skipped_inputs` (with `skipped_inputs`
    the caller passes, e.g. empty documents) and counted in `skipped`.
    """
    opt = options or DocsOptions()
    if opt.questions < 1:
        raise UsageError(f"--questions must be ≥ 1, got {opt.questions}")
    skipped = list(skipped_inputs)
    for c in chunks:
        if heading_only(c):
            skipped.append({"document": c.document, "reason": "heading_only_chunk",
                            "chunk": c.index, "span": [c.start, c.end], "heading": c.heading})
    chunks = [c for c in chunks if not heading_only(c)]
    out = Path(out)
    guard = OutGuard(out)
    out.mkdir(parents=True, exist_ok=True)
    gen = open_generator(generator, out)
    jgen = gen if judge is None else open_generator(judge, out)
    loaded, hashes = prompts.load_all(PROMPTS, opt.prompt_dir)
    p_gen = GenParams(max_tokens=opt.max_tokens, temperature=opt.temperature, seed=opt.seed)
    p_judge = GenParams(max_tokens=opt.judge_max_tokens, temperature=0.0, seed=opt.seed)
    chunk_ids = hashlib.sha256("\n".join(f"{c.document}:{c.start}:{c.end}:{c.text}"
                                         for c in chunks).encode()).hexdigest()
    manifest = {
        "recipe": "docs", "generator": gen.name, "judge": jgen.name,
        "params": {"questions": opt.questions, "chunk_words": opt.chunk_words,
                   "overlap": opt.overlap, "threshold": opt.threshold, "generate": p_gen.to_dict(),
                   "judge": p_judge.to_dict(), "focus": focus,
                   "avoid_sha256": hashlib.sha256("\n".join(avoid).encode()).hexdigest()},
        "limits": {"max_requests": opt.max_requests},
        "prompts": hashes,
        "inputs": {"documents": sorted({c.document for c in chunks}), "chunks": len(chunks),
                   "chunks_sha256": chunk_ids},
    }
    run = SynthRun(out, manifest)
    req = Requester(gen, opt.max_requests)
    jreq = req if jgen is gen else Requester(jgen, share_budget_with=req)
    stats = SynthStats("docs")
    avoid_pool = NoveltyPool(list(avoid), threshold=opt.threshold)
    # Questions about different facts often share their wording ("What time does X leave?"),
    # so among kept questions only token-identical repeats are dropped; the ROUGE-L threshold
    # applies to the texts the caller wants avoided.
    kept_pool = NoveltyPool([], threshold=REPEAT_THRESHOLD)
    focus_text = f"\n\nFocus on: {focus.strip()}" if focus and focus.strip() else ""
    prog, update = progress_bar("docs", len(chunks), opt.progress)

    def finish() -> dict[str, Any]:
        requests = {"total": req.count + (jreq.count if jreq is not req else 0),
                    "by_kind": {**req.by_kind, **(jreq.by_kind if jreq is not req else {})},
                    "sent_this_invocation": req.sent + (jreq.sent if jreq is not req else 0)}
        data = stats.to_json(requests)
        data["chunks"] = len(chunks)
        data["skipped"] = dict(Counter(x["reason"] for x in skipped))
        data["skipped_inputs"] = skipped
        data["resumed"] = run.resumed
        run.write_stats(data)
        return data

    try:
        with prog:
            for done, chunk in enumerate(chunks, 1):
                _one_chunk(chunk, loaded, req, jreq, p_gen, p_judge, opt, focus_text, avoid_pool,
                           kept_pool, stats, run, jgen.name)
                update(done, stats.accepted, sum(stats.rejected.values()))
                finish()
            stats.stopped = "done"
    except BudgetSpent:
        stats.stopped = "budget"
    except ModelError as exc:
        answered = req.count + (jreq.count if jreq is not req else 0)
        untouched = answered == 0 and not run.resumed
        run.close()
        if untouched:
            guard.restore(gen, jgen)
        else:
            stats.stopped = "error"
            stats.extra["error"] = exc.what
            finish()
        raise backend_failure(exc, out, answered, untouched) from None
    finally:
        run.close()
    return finish()


def _one_chunk(chunk: Chunk, loaded, req: Requester, jreq: Requester, p_gen: GenParams,
               p_judge: GenParams, opt: DocsOptions, focus_text: str, avoid_pool: NoveltyPool,
               kept_pool: NoveltyPool, stats: SynthStats, run: SynthRun, judge_name: str) -> None:
    """Generate, pre-filter and judge the pairs of one chunk; write rows and rejects."""
    reply = req.run("qa", [loaded["docs_qa"].messages(
        document=Path(chunk.document).name, chunk=chunk.text, n=str(opt.questions),
        focus=focus_text)], p_gen)[0]
    where = {"document": chunk.document, "chunk": chunk.index, "span": [chunk.start, chunk.end],
             "heading": chunk.heading}
    candidates = []
    parsed = parse_pairs(reply.text)
    for q, a in parsed[opt.questions:]:  # beyond --questions: kept in rejects, not lost
        stats.reject("over_question_limit")
        run.rejects.append({"stage": "qa", "reason": "over_question_limit", "question": q,
                            "answer": a, "request_id": reply.request_id, **where})
    for q, a in parsed[: opt.questions]:
        reason = None
        if not q or not a:
            reason = "empty_question_or_answer"
        elif avoid_pool.texts and not avoid_pool.check(q).novel:
            reason = "too_similar_to_avoided"
        else:
            d = kept_pool.check(q)
            stats.novelty.append(d.score)
            if not d.novel:
                reason = "repeated_question"
        if reason:
            stats.reject(reason)
            run.rejects.append({"stage": "qa", "reason": reason, "question": q, "answer": a,
                                "request_id": reply.request_id, **where})
            continue
        kept_pool.add(q)  # an earlier pair of the same chunk counts for the next one
        candidates.append((q, a))
    if not candidates:
        if not parsed:
            stats.reject("no_pairs_parsed")
            run.rejects.append({"stage": "qa", "reason": "no_pairs_parsed",
                                "text": reply.text[:2000], "request_id": reply.request_id,
                                **where})
        return
    msgs = [m for q, a in candidates for m in (
        loaded["judge_faithful"].messages(chunk=chunk.text, question=q, answer=a),
        loaded["judge_standalone"].messages(question=q))]
    judged = jreq.run("judge", msgs, p_judge, top_logprobs=TOP_LOGPROBS)
    verdicts = _yes_no_verdicts(jreq, msgs, judged, p_judge, stats)
    for k, (q, a) in enumerate(candidates):
        faithful, standalone = judged[2 * k], judged[2 * k + 1]
        (ok_f, why_f, how_f), (ok_s, why_s, how_s) = verdicts[2 * k], verdicts[2 * k + 1]
        if ok_f is None or ok_s is None:
            reason, why = "judge_unparseable", (why_f if ok_f is None else why_s)
        elif not ok_f:
            reason, why = "unfaithful", why_f
        elif not ok_s:
            reason, why = "not_self_contained", why_s
        else:
            reason = why = None
        ids = {"request_id": reply.request_id,
               "judge_request_ids": [faithful.request_id, standalone.request_id],
               "judge_verdicts": {"faithful": how_f, "standalone": how_s}}
        if reason:
            stats.reject(reason)
            run.rejects.append({"stage": "judge", "reason": reason, "judge_reason": why,
                                "question": q, "answer": a, **ids, **where})
            continue
        stats.accept_text(q)
        stats.rows["machine"] += 1
        run.train.append({"messages": [{"role": "user", "content": q},
                                       {"role": "assistant", "content": a}],
                          "meta": {"source": "machine", "recipe": "docs", "generator": req.name,
                                   "judge": judge_name, **ids, **where}})


def _yes_no_verdicts(jreq: Requester, msgs: list[Messages], judged: list[Reply],
                     params: GenParams, stats: SynthStats
                     ) -> list[tuple[bool | None, str, dict[str, Any]]]:
    """(passed, the judge's reason, {method, p_yes}) per judge reply.

    From the judge's token probabilities where it gave them (`eval.judge_probs`, as `eval judge`
    reads its verdicts): P(YES) over YES/NO at the verdict token, passed when above 0.5. Else the
    [[YES]]/[[NO]] parsed from the text. A judge that continues a prefix (a local model) and
    explained without a verdict is asked once more to go on with "Verdict: [[".
    """
    out: list[tuple[bool | None, str, dict[str, Any]]] = []
    retry: list[int] = []
    for i, r in enumerate(judged):
        dist = verdict_distribution(r.tokens, "yesno") if r.tokens else None
        ok, why = filters.parse_verdict(r.text)
        if dist is not None:
            p_yes = dist.probs["YES"]
            out.append((p_yes > 0.5, why, {"method": "probability", "p_yes": round(p_yes, 6)}))
            continue
        out.append((ok, why, {"method": "parsed" if ok is not None else "unparseable"}))
        if ok is None and r.tokens is not None and getattr(jreq.generator, "continues_prefix",
                                                            False):
            retry.append(i)
    if retry:
        tails = [judged[i].text.rstrip() + "\n\n" + YESNO_PREFIX for i in retry]
        again = jreq.run("judge_verdict", [[*msgs[i], {"role": "assistant", "content": t}]
                                           for i, t in zip(retry, tails)],
                         GenParams(max_tokens=4, temperature=0.0, seed=params.seed),
                         top_logprobs=TOP_LOGPROBS)
        for i, tail, r in zip(retry, tails, again):
            dist = verdict_distribution(r.tokens, "yesno", tail) if r.tokens else None
            if dist is not None:
                p_yes = dist.probs["YES"]
                out[i] = (p_yes > 0.5, out[i][1], {"method": "probability", "p_yes":
                                                   round(p_yes, 6), "after_explanation": True})
    methods = stats.extra.setdefault("judge_verdicts_by_method",
                                     {"probability": 0, "parsed": 0, "unparseable": 0})
    for _, _, how in out:
        methods[how["method"]] += 1
    return out


def run_docs(paths: Sequence[str | Path], generator: str | dict | Generator, out: str | Path, *,
             judge: str | dict | Generator | None = None, options: DocsOptions | None = None,
             focus: str | None = None, avoid: Sequence[str] = ()) -> dict[str, Any]:
    """Read and chunk `paths`, then `generate_from_chunks` (empty documents are skipped and
    listed in the stats' `skipped_inputs`)."""
    opt = options or DocsOptions()
    chunks, skipped = read_chunks(paths, opt.chunk_words, opt.overlap)
    if not [c for c in chunks if not heading_only(c)]:
        raise DataError("the documents hold no text (only headings, or nothing)",
                        where=", ".join(map(str, paths)),
                        fix="pass documents with content (scanned PDFs need OCR first)")
    return generate_from_chunks(chunks, generator, out, judge=judge, options=opt, focus=focus,
                                avoid=avoid, skipped_inputs=skipped)


__all__ = ["Chunk", "DocsOptions", "chunk_documents", "chunk_text", "generate_from_chunks",
           "heading_only", "parse_pairs", "read_chunks", "read_document", "run_docs"]
