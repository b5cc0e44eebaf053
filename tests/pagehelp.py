"""What the page-app tests (arena, loop review) share: a signed-in HTTP client, a served process."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

SRC = Path(__file__).resolve().parent.parent / "src"


class SignedIn:
    """One browser-less person signed in (or refused) at POST /login: a cookie jar and the answer."""

    timeout = 30.0

    def __init__(self, base_url: str, name: str, key: str | None = None):
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=self.timeout)
        data = {"name": name, **({"key": key} if key is not None else {})}
        self.login_response = self.http.post("/login", data=data)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()


def src_env() -> dict[str, str]:
    """This environment with the checkout's src/ first on PYTHONPATH, for `python -m tuneloop`."""
    return {**os.environ,
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def wait_healthy(proc: subprocess.Popen, base: str, what: str) -> None:
    """Wait (60 s at most) until `proc` answers GET {base}/health; fail with its stderr if it
    exits first."""
    deadline = time.time() + 60
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.time() < deadline, f"{what} did not come up"
        time.sleep(0.2)
