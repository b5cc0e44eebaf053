"""Load a model reference into an Engine and run the OpenAI-compatible app with uvicorn."""

from __future__ import annotations

from typing import Any

from tuneloop.infer.generate import load_for_generation
from tuneloop.serve.app import DEFAULT_MAX_BODY, create_app
from tuneloop.serve.engine import Engine
from tuneloop.serve.security import check_bind, check_port_free


def build_app(ref: str, *, model_name: str | None = None, api_key: str | None = None,
              max_body_bytes: int = DEFAULT_MAX_BODY, max_batch_size: int = 16,
              device: str = "cpu") -> Any:
    """Load `ref` (base, full fine-tune or base + adapter) and return the ready FastAPI app."""
    # The template the model was trained with (R15), and its end-of-turn ids to stop at (R14).
    model, tokenizer, renderer = load_for_generation(ref, device)
    engine = Engine(model, tokenizer, renderer.stop_token_ids, max_batch_size=max_batch_size)
    return create_app(engine, model_name=model_name or ref, chat_prompt_ids=renderer.prompt_ids,
                      api_key=api_key, max_body_bytes=max_body_bytes)


def serve(ref: str, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          insecure: bool = False, model_name: str | None = None,
          max_body_bytes: int = DEFAULT_MAX_BODY, max_batch_size: int = 16,
          device: str = "cpu", log_level: str = "info") -> None:
    """Check the bind (R21), load the model, and serve until interrupted."""
    import sys

    import uvicorn

    check_bind(host, api_key, insecure)  # before the slow model load: fail fast
    check_port_free(host, port)
    print(f"loading {ref} ...", file=sys.stderr, flush=True)
    app = build_app(ref, model_name=model_name, api_key=api_key, max_body_bytes=max_body_bytes,
                    max_batch_size=max_batch_size, device=device)
    print(f"serving {ref} as model {model_name or ref!r} at http://{host}:{port}/v1"
          f"{' (API key required)' if api_key else ''}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
