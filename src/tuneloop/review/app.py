"""The review web app: sign in with a name, write rows for failed cases, judge generated rows.

One server-rendered page lists the round's failed cases (question, the model's answer, the failed
checks, the chunk targeted) with a form to write a training row about that fact in the
reviewer's own words, and the generated rows with Accept / Reject / Save edit. No script runs on
it. The page rules (autoescaped templates: every case, answer and row is user or model text,
R22; a CSP nonce; CSRF per session; name + access-key sign-in, R21) are tuneloop.serve.pages,
shared with the arena.

A written or edited row is refused when it shares a 13-gram with a suite case (or holds a whole
question shorter than that): `tuneloop iterate` drops such rows before training, so saving one
would only lose the reviewer's work later. Each reviewer saves an item once; saving it again
replaces the earlier save (kept in the database, see store.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from tuneloop.data.contamination import contamination_report
from tuneloop.review.items import Item, ReviewInputs
from tuneloop.review.store import ReviewStore
from tuneloop.serve.app import BodyLimitMiddleware
from tuneloop.serve.pageapp import add_error_pages, add_sign_in
from tuneloop.serve.pages import (
    PageError,
    Session,
    check_csrf,
    read_form,
    render_page,
    template_environment,
)

COOKIE = "review_session"
DEFAULT_MAX_BODY = 256 * 1024  # two texts of MAX_TEXT characters, percent-encoded UTF-8
MAX_TEXT = 8000
NGRAM = 13  # iterate's contamination scan (iterate.clean_new_rows)
_FIELDS = {"item", "csrf", "action", "question", "answer"}


def _text(data: dict[str, str], name: str) -> str:
    """A textarea's value: browsers send CRLF line ends; the row keeps plain newlines."""
    return data.get(name, "").replace("\r\n", "\n").replace("\r", "\n").strip()


def _bounded(text: str, what: str) -> str:
    if not text:
        raise PageError(400, f"the {what} is empty; write it before saving")
    if len(text) > MAX_TEXT:
        raise PageError(400, f"the {what} has {len(text)} characters; at most {MAX_TEXT}")
    return text


def suite_overlap(text: str, suite_texts: list[dict[str, str]]) -> list[str]:
    """Case ids whose text shares a 13-gram with `text` (whole text, when under 13 words)."""
    if not suite_texts:
        return []
    report = contamination_report([text], suite_texts, n=NGRAM)
    return [item.where for item in report.items]


def create_app(store: ReviewStore, inputs: ReviewInputs, *, api_key: str | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY) -> FastAPI:
    """The review app over `inputs`, saving into `store` (which must already hold the items)."""
    env = template_environment("review", "arena")
    items: dict[str, Item] = {i.id: i for i in [*inputs.cases, *inputs.rows]}
    app = FastAPI(title="tuneloop review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)

    def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("progress", None)
        return render_page(env, template, status, **context)

    def message(status: int, text: str) -> HTMLResponse:
        return page("message.html.j2", status, heading="Not saved", message=text,
                    is_error=status >= 400)

    add_error_pages(app, message)

    def session_of(request: Request) -> Session | None:
        return store.session(request.cookies.get(COOKIE))

    add_sign_in(app, page, store.create_session, cookie=COOKIE, api_key=api_key)

    @app.get("/")
    async def review_page(request: Request):
        def build() -> Response:
            session = session_of(request)
            if session is None:
                return RedirectResponse("/login", status_code=303)
            mine = {r.item_id: r for r in store.reviews(session.rater) if r.item_id in items}
            return page("review.html.j2", cases=inputs.cases, rows=inputs.rows, mine=mine,
                        csrf=session.csrf, max_text=MAX_TEXT, ngram=NGRAM,
                        progress={"reviewer": session.rater, "saved": len(mine),
                                  "total": len(items)})

        return await run_in_threadpool(build)

    def checked_row(question: str, answer: str) -> None:
        hits = suite_overlap(f"{question}\n{answer}", inputs.suite_texts)
        if hits:
            raise PageError(400, f"this row shares {NGRAM} words in a row with suite case "
                            f"{', '.join(map(repr, hits[:3]))} (or holds its whole question): "
                            "tuneloop iterate drops such rows before training. Ask about the "
                            "fact in your own words.")

    @app.post("/save")
    async def save(request: Request):
        data = await read_form(request, _FIELDS)
        session = await run_in_threadpool(session_of, request)
        if session is None:
            raise PageError(401, "your session is unknown or has expired; sign in again")
        check_csrf(data, session)
        item = items.get(data.get("item", ""))
        if item is None:
            raise PageError(404, "unknown item: only the items this page lists can be saved")
        action = data.get("action", "")
        if item.kind == "case":
            if action != "write":
                raise PageError(400, "a failed case takes a written row (action 'write')")
            question = _bounded(_text(data, "question"), "question")
            answer = _bounded(_text(data, "answer"), "answer")
            checked_row(question, answer)
            saved = ("written", question, answer)
        else:
            generated = item.data["answer"].strip()
            answer = _text(data, "answer")
            if action == "accept":
                if answer and answer != generated:
                    raise PageError(400, "you changed the answer: press Save edit to keep your "
                                    "version (Accept keeps the generated answer as it is)")
                saved = ("accepted", None, None)
            elif action == "reject":
                saved = ("rejected", None, None)
            elif action == "edit":
                answer = _bounded(answer, "answer")
                if answer == generated:
                    raise PageError(400, "the answer is unchanged: press Accept to keep it")
                checked_row(item.data["question"], answer)
                saved = ("edited", None, answer)
            else:
                raise PageError(400, "action must be accept, reject or edit")
        await run_in_threadpool(store.save, item.id, session.rater, *saved)
        return RedirectResponse(f"/#{item.id}", status_code=303)

    return app
