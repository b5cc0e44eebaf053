"""The sqlite file behind a page app (arena, loop review): what every such store does alike.

A subclass names its database (`kind`, used in every message), its error class and its own list
of named migrations; this base opens one connection per thread (the web apps are threaded),
refuses a sqlite file that holds some other tool's migrations, applies its own through the run
index's machinery (`tuneloop.index.migrate`) and keeps the sessions every page signs people into.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from tuneloop.errors import TuneloopError
from tuneloop.index import Migration, applied_migrations, migrate, open_wal
from tuneloop.serve.pages import Session, create_session, find_session

if TYPE_CHECKING:  # annotations only (typing.Self is 3.11+; the project supports 3.10)
    from typing_extensions import Self


def utc_now() -> str:
    """The current UTC time as the page databases store it (ISO 8601, microseconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class PageStore:
    """A page app's database at `path`; one sqlite connection per thread."""

    kind: ClassVar[str]  # "arena", "review": the database's name in messages and the CLI
    article: ClassVar[str] = "a"  # "an arena database"
    error: ClassVar[type[TuneloopError]]
    migrations: ClassVar[list[Migration]]

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()
        try:
            foreign = set(applied_migrations(self.db)) - {fn.__name__ for fn in self.migrations}
            if foreign:
                raise self.error(
                    f"this sqlite file is not {self.article} {self.kind} database (it holds "
                    f"migrations {sorted(foreign)[:3]})", where=str(self.path),
                    fix=f"pass --db with a new file name for the {self.kind}")
            migrate(self.db, migrations=self.migrations)
        except sqlite3.DatabaseError as exc:
            raise self.error(f"cannot use the {self.kind} database: {exc}", where=str(self.path),
                             fix="pass --db with a new file name (or move this one aside)"
                             ) from exc

    @classmethod
    def open_existing(cls, path: str | Path) -> Self:
        """The database at `path`, which must already exist (for reading what a server wrote)."""
        path = Path(path)
        if not path.is_file():
            raise cls.error(f"no {cls.kind} database here", where=str(path),
                            fix=f"pass the --db file `tuneloop {cls.kind} serve` wrote")
        return cls(path)

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = open_wal(self.path)
            except (sqlite3.DatabaseError, OSError) as exc:
                raise self.error(f"cannot open the {self.kind} database: {exc}",
                                 where=str(self.path),
                                 fix=f"pass --db with a writable path to a new or {self.kind} "
                                 "database file") from exc
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def create_session(self, name: str) -> tuple[str, Session]:
        """A new session for the person `name`: (cookie token, session). Only the token's hash
        is stored."""
        return create_session(self.db, name)

    def session(self, token: str | None) -> Session | None:
        """The session a cookie token belongs to, or None."""
        return find_session(self.db, token)
