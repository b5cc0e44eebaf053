"""The options every listening command shares: where to bind and who may connect (R21)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def listen_options(*, port: int, api_key_help: str) -> Callable[[Any], Any]:
    """--host, --port, --api-key and --insecure: loopback by default, and anything else only
    with an API key or an explicit --insecure (the server enforces it; these say so)."""
    options = [
        click.option("--host", default="127.0.0.1", show_default=True,
                     help="Address to bind; anything but loopback needs --api-key "
                     "(or --insecure)."),
        click.option("--port", default=port, show_default=True, type=click.IntRange(0, 65535)),
        click.option("--api-key", envvar="TUNELOOP_API_KEY", default=None,
                     help=f"{api_key_help} [env TUNELOOP_API_KEY]."),
        click.option("--insecure", is_flag=True,
                     help="Allow a non-loopback bind without --api-key."),
    ]

    def apply(command: Any) -> Any:
        for option in reversed(options):  # so --help lists them in the order above
            command = option(command)
        return command

    return apply
