"""Bind-address safety for servers (R21): loopback by default, no open port without a key."""

from __future__ import annotations

import ipaddress
import socket

from tuneloop.errors import ServeError


def is_loopback(host: str) -> bool:
    """True when every address `host` resolves to is a loopback address."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False  # unresolvable: treat as exposed, the safe answer
    addrs = {info[4][0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def check_bind(host: str, api_key: str | None, insecure: bool = False) -> None:
    """Refuse a non-loopback bind without an API key unless the user passed --insecure."""
    if is_loopback(host) or api_key or insecure:
        return
    raise ServeError(
        f"refusing to listen on {host!r} without an API key: anyone who can reach this "
        "machine could use the model",
        where="--host",
        fix="pass --api-key KEY (or set TUNELOOP_API_KEY), keep the default --host 127.0.0.1, "
        "or add --insecure if this network is trusted",
    )


def check_port_free(host: str, port: int) -> None:
    """Fail before the slow model load if the address cannot be bound (port taken, bad host)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ServeError(f"cannot resolve host {host!r}: {exc}", where="--host",
                         fix="pass an IP address or a resolvable name") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}", where="--port",
                             fix="stop the other server or pick another --port") from None
