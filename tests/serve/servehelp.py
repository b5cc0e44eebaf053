"""Run `tuneloop serve` as a real subprocess on 127.0.0.1 (shared by serve and judge tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

TUNELOOP = str(Path(sys.executable).parent / "tuneloop")


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A running `tuneloop serve` process: its base URL, key and model id."""

    def __init__(self, proc: subprocess.Popen, url: str, key: str | None, model: str,
                 log: Path):
        self.proc, self.url, self.key, self.model, self.log = proc, url, key, model, log


def start_server(ref: str, tmp: Path, *, key: str | None = "test-key", extra=(),
                 timeout: float = 180) -> Served:
    """Launch the CLI, wait until GET /v1/models answers, return a handle."""
    port = free_port()
    log = tmp / f"serve-{port}.log"
    cmd = [TUNELOOP, "serve", ref, "--port", str(port), *extra]
    if key:
        cmd += ["--api-key", key]
    env = {**os.environ, "TUNELOOP_HOME": str(tmp / "home")}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"tuneloop serve exited early:\n{log.read_text()}")
        try:
            r = httpx.get(url + "/v1/models", headers=headers, timeout=2)
            if r.status_code == 200:
                return Served(proc, url, key, r.json()["data"][0]["id"], log)
        except httpx.TransportError:
            pass
        if time.time() > deadline:
            stop_server(proc)
            raise RuntimeError(f"tuneloop serve did not come up:\n{log.read_text()}")
        time.sleep(0.25)


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate (then kill) the server process we started."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
