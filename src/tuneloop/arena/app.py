"""The arena web app: sign in with a name, vote on blind battles, see the names after the vote.

Server-rendered HTML (jinja2 with autoescape: every prompt, answer, model name and rater string is
user text, R22) plus one small inline script for keyboard shortcuts; nothing is loaded from
elsewhere. A Content-Security-Policy with a per-response nonce means that even text that escaped
its escaping could not run a script. These page rules live in tuneloop.serve.pages, shared with
the loop review page.

Forms: a session cookie (HttpOnly, SameSite=Strict) names the rater; every POST carries the
session's CSRF token and is refused from a foreign Origin. Battle ids are issued by the server and
take exactly one vote (R23; enforced in the database, see store.py). Bodies are size-limited
before parsing and anything malformed gets a 4xx page (R25). No request names a file (R26).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from tuneloop.arena.pairing import next_battle
from tuneloop.arena.store import WINNERS, ArenaStore, Session, VoteRejected
from tuneloop.serve.app import BodyLimitMiddleware
from tuneloop.serve.pageapp import add_error_pages, add_sign_in
from tuneloop.serve.pages import (  # noqa: F401 - MAX_NAME: the arena's name limit, as it was
    MAX_NAME,
    PageError,
    check_csrf,
    read_form,
    render_page,
    template_environment,
)

COOKIE = "arena_session"
DEFAULT_MAX_BODY = 64 * 1024  # a vote form is a few hundred bytes; the reason is capped below
MAX_REASON = 2000
_VERDICT = {"a": "A is better", "b": "B is better", "tie": "tie", "both_bad": "both are bad"}


def create_app(store: ArenaStore, *, prompt_ids: list[str], models: list[str],
               api_key: str | None = None, max_votes: int | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY) -> FastAPI:
    """The arena app serving battles over `prompt_ids` × pairs of `models` from `store`.

    Every (prompt, model) answer must already be in the store (see answers.ensure_answers).
    """
    if len(models) < 2 or not prompt_ids:
        raise ValueError("the arena needs two or more models and at least one prompt")
    env = template_environment("arena")
    app = FastAPI(title="tuneloop arena", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)

    def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("progress", None)
        return render_page(env, template, status, **context)

    def message(status: int, text: str, *, heading: str = "Not accepted",
                link: str | None = "/", link_text: str = "Back to the arena") -> HTMLResponse:
        return page("message.html.j2", status, heading=heading, message=text,
                    is_error=status >= 400, link=link, link_text=link_text)

    add_error_pages(app, message)

    @app.exception_handler(VoteRejected)
    async def _vote_rejected(request: Request, exc: VoteRejected):
        return message(exc.status, exc.message)

    def session_of(request: Request) -> Session | None:
        return store.session(request.cookies.get(COOKIE))

    async def voting_session(request: Request, data: dict[str, str]) -> Session:
        session = await run_in_threadpool(session_of, request)
        if session is None:
            raise PageError(401, "your session is unknown or has expired; sign in again")
        check_csrf(data, session)
        return session

    def progress(session: Session) -> dict[str, Any]:
        return {"total": store.vote_count(), "rater": session.rater,
                "mine": store.vote_count(session.rater), "limit": max_votes}

    add_sign_in(app, page, store.create_session, cookie=COOKIE, api_key=api_key)

    @app.get("/")
    async def battle_page(request: Request):
        def build() -> Response:
            session = session_of(request)
            if session is None:
                return RedirectResponse("/login", status_code=303)
            if max_votes is not None and store.vote_count(session.rater) >= max_votes:
                return page("message.html.j2", heading="Thank you",
                            message=f"You have cast the {max_votes} vote(s) asked of each rater.",
                            is_error=False, link=None, link_text="", progress=progress(session))
            battle = store.battle(next_battle(store, session, prompt_ids, models))
            return page("battle.html.j2", battle=battle, csrf=session.csrf,
                        max_reason=MAX_REASON, progress=progress(session))

        return await run_in_threadpool(build)

    @app.post("/vote")
    async def vote(request: Request):
        data = await read_form(request, {"battle_id", "csrf", "choice", "reason"})
        session = await voting_session(request, data)
        choice, reason = data.get("choice", ""), data.get("reason", "").strip()
        if choice not in WINNERS:
            raise PageError(400, f"choice must be one of {', '.join(WINNERS)}")
        if len(reason) > MAX_REASON:
            raise PageError(400, f"the reason has {len(reason)} characters; at most {MAX_REASON}")
        battle_id = data.get("battle_id", "")
        await run_in_threadpool(store.cast_vote, session, battle_id, choice, reason, max_votes)
        return RedirectResponse(f"/battle/{battle_id}", status_code=303)

    @app.post("/skip")
    async def skip(request: Request):
        data = await read_form(request, {"battle_id", "csrf"})
        session = await voting_session(request, data)
        await run_in_threadpool(store.skip, session, data.get("battle_id", ""))
        return RedirectResponse("/", status_code=303)

    @app.get("/battle/{battle_id}")
    async def reveal(request: Request, battle_id: str):
        def build() -> Response:
            session = session_of(request)
            if session is None:
                return RedirectResponse("/login", status_code=303)
            battle = store.battle(battle_id)
            if battle is None:
                raise PageError(404, "unknown battle id")
            if battle.session_hash != session.token_hash:
                raise PageError(403, "this battle was issued to another session")
            if battle.winner is None:
                raise PageError(409, "the models are named only after your vote; vote first")
            return page("reveal.html.j2", battle=battle,
                        verdict=_VERDICT[battle.winner], progress=progress(session))

        return await run_in_threadpool(build)

    return app
