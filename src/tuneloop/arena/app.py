"""The arena web app: sign in with a name, vote on blind battles, see the names after the vote.

Server-rendered HTML (jinja2 with autoescape: every prompt, answer, model name and rater string is
user text, R22) plus one small inline script for keyboard shortcuts; nothing is loaded from
elsewhere. A Content-Security-Policy with a per-response nonce means that even text that escaped
its escaping could not run a script.

Forms: a session cookie (HttpOnly, SameSite=Strict) names the rater; every POST carries the
session's CSRF token and is refused from a foreign Origin. Battle ids are issued by the server and
take exactly one vote (R23; enforced in the database, see store.py). Bodies are size-limited
before parsing and anything malformed gets a 4xx page (R25). No request names a file (R26).
"""

from __future__ import annotations

import hmac
import secrets
import unicodedata
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneloop.arena.pairing import next_battle
from tuneloop.arena.store import WINNERS, ArenaStore, Session, VoteRejected
from tuneloop.serve.app import BodyLimitMiddleware

COOKIE = "arena_session"
DEFAULT_MAX_BODY = 64 * 1024  # a vote form is a few hundred bytes; the reason is capped below
MAX_NAME = 40
MAX_REASON = 2000
_VERDICT = {"a": "A is better", "b": "B is better", "tie": "tie", "both_bad": "both are bad"}


class PageError(Exception):
    """A request refused with an HTML message page and a 4xx status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _environment():
    import jinja2

    folder = resources.files("tuneloop").joinpath("resources", "arena")

    def load(name: str) -> str:
        return folder.joinpath(name).read_text(encoding="utf-8")

    return jinja2.Environment(loader=jinja2.FunctionLoader(load), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True)


def _clean_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name:
        raise PageError(400, "please enter your name")
    if len(name) > MAX_NAME:
        raise PageError(400, f"a name has at most {MAX_NAME} characters (got {len(name)})")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise PageError(400, "the name holds control characters")
    return name


def create_app(store: ArenaStore, *, prompt_ids: list[str], models: list[str],
               api_key: str | None = None, max_votes: int | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY) -> FastAPI:
    """The arena app serving battles over `prompt_ids` × pairs of `models` from `store`.

    Every (prompt, model) answer must already be in the store (see answers.ensure_answers).
    """
    if len(models) < 2 or not prompt_ids:
        raise ValueError("the arena needs two or more models and at least one prompt")
    env = _environment()
    app = FastAPI(title="tuneloop arena", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        nonce = secrets.token_urlsafe(12)
        context.setdefault("progress", None)
        html = env.get_template(template).render(nonce=nonce, **context)
        headers = {
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        }
        return HTMLResponse(html, status_code=status, headers=headers)

    def message(request: Request, status: int, text: str, *, heading: str = "Not accepted",
                link: str | None = "/", link_text: str = "Back to the arena") -> HTMLResponse:
        return page(request, "message.html.j2", status, heading=heading, message=text,
                    is_error=status >= 400, link=link, link_text=link_text)

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError):
        return message(request, exc.status, exc.message)

    @app.exception_handler(VoteRejected)
    async def _vote_rejected(request: Request, exc: VoteRejected):
        return message(request, exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return message(request, exc.status_code, str(exc.detail))

    def session_of(request: Request) -> Session | None:
        return store.session(request.cookies.get(COOKIE))

    async def form(request: Request, fields: set[str]) -> dict[str, str]:
        """The urlencoded body as a dict; unknown, repeated or undecodable fields are a 400."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise PageError(403, "cross-site form submissions are refused")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise PageError(415, "send the form as application/x-www-form-urlencoded")
        raw = await request.body()
        try:
            text = raw.decode("utf-8")
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                              max_num_fields=len(fields))
        except (UnicodeDecodeError, ValueError):
            raise PageError(400, "the form body is malformed") from None
        data: dict[str, str] = {}
        for key, value in pairs:
            if key not in fields or key in data:
                raise PageError(400, f"unexpected or repeated form field {key[:40]!r}")
            data[key] = value
        return data

    async def voting_session(request: Request, data: dict[str, str]) -> Session:
        session = await run_in_threadpool(session_of, request)
        if session is None:
            raise PageError(401, "your session is unknown or has expired; sign in again")
        if not hmac.compare_digest(data.get("csrf", "").encode(), session.csrf.encode()):
            raise PageError(403, "the form's CSRF token is missing or wrong; reload the page")
        return session

    def progress(session: Session) -> dict[str, Any]:
        return {"total": store.vote_count(), "rater": session.rater,
                "mine": store.vote_count(session.rater), "limit": max_votes}

    @app.get("/health")
    async def health():
        return JSONResponse({"status": "ok"})

    @app.get("/login")
    async def login_form(request: Request):
        return page(request, "login.html.j2", error=None, name="", need_key=api_key is not None,
                    max_name=MAX_NAME)

    @app.post("/login")
    async def login(request: Request):
        data = await form(request, {"name", "key"})
        try:
            name = _clean_name(data.get("name", ""))
        except PageError as exc:
            return page(request, "login.html.j2", exc.status, error=exc.message,
                        name=data.get("name", "")[:MAX_NAME], need_key=api_key is not None,
                        max_name=MAX_NAME)
        if api_key is not None and not hmac.compare_digest(
                data.get("key", "").encode(), api_key.encode()):
            return page(request, "login.html.j2", 401, error="wrong access key", name=name,
                        need_key=True, max_name=MAX_NAME)
        token, _ = await run_in_threadpool(store.create_session, name)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    @app.get("/")
    async def battle_page(request: Request):
        def build() -> Response:
            session = session_of(request)
            if session is None:
                return RedirectResponse("/login", status_code=303)
            if max_votes is not None and store.vote_count(session.rater) >= max_votes:
                return page(request, "message.html.j2", heading="Thank you",
                            message=f"You have cast the {max_votes} vote(s) asked of each rater.",
                            is_error=False, link=None, link_text="", progress=progress(session))
            battle = store.battle(next_battle(store, session, prompt_ids, models))
            return page(request, "battle.html.j2", battle=battle, csrf=session.csrf,
                        max_reason=MAX_REASON, progress=progress(session))

        return await run_in_threadpool(build)

    @app.post("/vote")
    async def vote(request: Request):
        data = await form(request, {"battle_id", "csrf", "choice", "reason"})
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
        data = await form(request, {"battle_id", "csrf"})
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
            return page(request, "reveal.html.j2", battle=battle,
                        verdict=_VERDICT[battle.winner], progress=progress(session))

        return await run_in_threadpool(build)

    return app
