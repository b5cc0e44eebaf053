"""HTML pages for people (arena raters, loop reviewers): the rules every such page keeps.

- Templates: jinja2 with autoescape and StrictUndefined. Every prompt, answer, name and row shown
  is user or model text (R22), so nothing is marked safe.
- Responses: a Content-Security-Policy with a per-response nonce, so only the page's own inline
  style and script run even if some text escaped its escaping; plus nosniff, no referrer and no
  caching.
- Forms: application/x-www-form-urlencoded only, fields from a fixed set (an unknown or repeated
  field is a 400), and a foreign Origin is refused (403). Bodies are size-limited before parsing
  by serve.app's BodyLimitMiddleware.
- Sessions: a cookie token (HttpOnly, SameSite=Strict) that the database keeps only as its
  sha256, with a CSRF token every POST must carry. Signing in takes a name, plus the access key
  when the server was started with one (off loopback, R21).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from tuneloop.index import write_transaction

if TYPE_CHECKING:  # the session helpers serve export and load_reviewed too: no web stack there
    from fastapi import Request
    from fastapi.responses import HTMLResponse, Response

MAX_NAME = 40
# The sessions table every page database holds (arena migration a001 created the same shape).
SESSIONS_TABLE = ("CREATE TABLE sessions (token_hash TEXT PRIMARY KEY, rater TEXT NOT NULL, "
                  "csrf TEXT NOT NULL, created_at TEXT NOT NULL)")


class PageError(Exception):
    """A request refused with an HTML message page and a 4xx status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Session:
    """A signed-in person: the name they gave and the CSRF token their forms must carry."""

    token_hash: str
    rater: str
    csrf: str


def new_token() -> str:
    """An unguessable id: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


def token_hash(token: str) -> str:
    """What the database keeps of a cookie token (a stolen file holds no usable cookie)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_session(db: sqlite3.Connection, rater: str) -> tuple[str, Session]:
    """A new session for `rater` in `db`'s sessions table: (cookie token, session)."""
    token, csrf = new_token(), new_token()
    session = Session(token_hash(token), rater, csrf)
    now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    with write_transaction(db):
        db.execute("INSERT INTO sessions (token_hash, rater, csrf, created_at) "
                   "VALUES (?, ?, ?, ?)", (session.token_hash, rater, csrf, now))
    return token, session


def find_session(db: sqlite3.Connection, token: str | None) -> Session | None:
    """The session a cookie token belongs to, or None."""
    if not token or len(token) > 100:
        return None
    row = db.execute("SELECT token_hash, rater, csrf FROM sessions WHERE token_hash = ?",
                     (token_hash(token),)).fetchone()
    return Session(*row) if row else None


def template_environment(*folders: str):
    """A jinja2 environment over `tuneloop/resources/<folder>/` (the first folder holding a name
    wins, so one page can reuse another's stylesheet), autoescaping everything."""
    import jinja2

    roots = [resources.files("tuneloop").joinpath("resources", f) for f in folders]

    def load(name: str) -> str | None:
        for root in roots:
            if root.joinpath(name).is_file():
                return root.joinpath(name).read_text(encoding="utf-8")
        return None  # jinja2 raises TemplateNotFound

    return jinja2.Environment(loader=jinja2.FunctionLoader(load), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True)


def render_page(env: Any, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """`template` rendered with a fresh CSP nonce (as `nonce`) and the page security headers."""
    from fastapi.responses import HTMLResponse  # lazy: start-up of the database-only users

    nonce = secrets.token_urlsafe(12)
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


async def read_form(request: Request, fields: set[str]) -> dict[str, str]:
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


def check_csrf(data: dict[str, str], session: Session) -> None:
    """Refuse (403) a form whose `csrf` field is not the session's token."""
    if not hmac.compare_digest(data.get("csrf", "").encode(), session.csrf.encode()):
        raise PageError(403, "the form's CSRF token is missing or wrong; reload the page")


def clean_name(raw: str) -> str:
    """A sign-in name with whitespace collapsed; empty, long or control characters are a 400."""
    name = " ".join(raw.split())
    if not name:
        raise PageError(400, "please enter your name")
    if len(name) > MAX_NAME:
        raise PageError(400, f"a name has at most {MAX_NAME} characters (got {len(name)})")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise PageError(400, "the name holds control characters")
    return name


def key_matches(given: str, api_key: str | None) -> bool:
    """True when the server needs no access key or `given` is it (constant-time compare)."""
    return api_key is None or hmac.compare_digest(given.encode(), api_key.encode())


def set_session_cookie(response: Response, cookie: str, token: str) -> None:
    """Give the browser its session token: HttpOnly, SameSite=Strict, whole site."""
    response.set_cookie(cookie, token, httponly=True, samesite="strict", path="/")
