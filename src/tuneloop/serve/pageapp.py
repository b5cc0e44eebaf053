"""What every page app (arena, loop review) serves alike: /health, the sign-in form, error pages.

These import the web stack at module level, because FastAPI reads the handlers' annotations when
a route is added; that is why they live apart from tuneloop.serve.pages, which the stores and
exports import without FastAPI.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tuneloop.serve.pages import (
    MAX_NAME,
    PageError,
    Session,
    clean_name,
    key_matches,
    read_form,
    set_session_cookie,
)

# page(template, status, **context) → the rendered response; message(status, text) → a message page.
Page = Callable[..., HTMLResponse]
Message = Callable[[int, str], HTMLResponse]


def add_error_pages(app: FastAPI, message: Message) -> None:
    """Answer a PageError, and the HTTP errors FastAPI raises itself (404, 405, …), with
    `message(status, text)`: a person sees a page, never a JSON error."""

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError):
        return message(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return message(exc.status_code, str(exc.detail))


def add_sign_in(app: FastAPI, page: Page, new_session: Callable[[str], tuple[str, Session]], *,
                cookie: str, api_key: str | None) -> None:
    """GET /health; GET /login, the sign-in form (`login.html.j2` through `page`); POST /login: a
    clean name, plus the access key when the server has one, gets a session cookie and goes to /."""

    def login_page(status: int = 200, error: str | None = None, name: str = "") -> HTMLResponse:
        return page("login.html.j2", status, error=error, name=name,
                    need_key=api_key is not None, max_name=MAX_NAME)

    @app.get("/health")
    async def health():
        return JSONResponse({"status": "ok"})

    @app.get("/login")
    async def login_form(request: Request):
        return login_page()

    @app.post("/login")
    async def login(request: Request):
        data = await read_form(request, {"name", "key"})
        try:
            name = clean_name(data.get("name", ""))
        except PageError as exc:
            return login_page(exc.status, exc.message, data.get("name", "")[:MAX_NAME])
        if not key_matches(data.get("key", ""), api_key):
            return login_page(401, "wrong access key", name)
        token, _ = await run_in_threadpool(new_session, name)
        response = RedirectResponse("/", status_code=303)
        set_session_cookie(response, cookie, token)
        return response
