"""`tuneloop serve`: an OpenAI-compatible HTTP server for a model reference."""

from __future__ import annotations

import click

from tuneloop.commands.listen import listen_options


@click.command("serve")
@click.argument("ref")
@listen_options(port=8000, api_key_help="Require 'Authorization: Bearer KEY' on every /v1 route")
@click.option("--model-name", default=None, help="Model id clients send (default: REF).")
@click.option("--max-body-bytes", default=1 << 20, show_default=True, type=click.IntRange(1),
              help="Larger request bodies get 413.")
@click.option("--max-batch-size", default=16, show_default=True, type=click.IntRange(1),
              help="Rows generated together; compatible concurrent requests are batched.")
@click.option("--device", default="cpu", show_default=True)
def serve_cmd(ref: str, host: str, port: int, api_key: str | None, insecure: bool,
              model_name: str | None, max_body_bytes: int, max_batch_size: int,
              device: str) -> None:
    """Serve REF (embedded alias, HF dir, hub id or run dir) with an OpenAI-compatible API.

    Endpoints: GET /v1/models, POST /v1/chat/completions (stream: true for SSE),
    POST /v1/completions. Chat prompts use the template saved with the model and stop at
    end-of-turn. Binds 127.0.0.1 by default.
    """
    import os

    # The generation worker is a second thread using torch; with OpenMP's default spin-waiting
    # the main thread's idle pool and the worker's pool fight for the cores. Measured on the
    # 2-core dev box: a 16-token request took 0.8-1.9 s spinning vs 0.06-0.13 s passive.
    # Must be set before torch loads; an explicit user setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # lazy: pulls fastapi/uvicorn (~0.5 s of CLI start-up), and must follow the env var above
    from tuneloop.serve.server import serve

    serve(ref, host=host, port=port, api_key=api_key, insecure=insecure, model_name=model_name,
          max_body_bytes=max_body_bytes, max_batch_size=max_batch_size, device=device)


def register(cli: click.Group) -> None:
    """Add `serve` to the CLI."""
    cli.add_command(serve_cmd)
