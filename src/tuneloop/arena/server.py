"""`tuneloop arena serve`: check the bind, prepare every answer, then run the web app."""

from __future__ import annotations

import sys
from pathlib import Path

from tuneloop.arena.answers import ensure_answers
from tuneloop.arena.app import DEFAULT_MAX_BODY, create_app
from tuneloop.arena.prompts import parse_models, parse_system_prompts, read_prompts
from tuneloop.arena.store import ArenaStore
from tuneloop.backends import GenParams
from tuneloop.serve.security import check_bind, check_port_free


def prepare(prompts_path: str | Path, model_args: list[str] | tuple[str, ...], db: str | Path,
            params: GenParams, *, system_args: list[str] | tuple[str, ...] = (),
            progress: bool = True) -> tuple[ArenaStore, list[str], list[str]]:
    """Open `db`, record the prompts and models, generate missing answers; (store, ids, names)."""
    prompts = read_prompts(prompts_path)
    models = parse_models(model_args)
    system_prompts = parse_system_prompts(system_args, models)
    store = ArenaStore(db)
    try:
        store.add_prompts(prompts)
        store.add_models(models, system_prompts)
        ensure_answers(store, prompts, models, params, system_prompts=system_prompts,
                       progress=progress)
    except BaseException:
        store.close()
        raise
    return store, list(prompts), list(models)


def serve_arena(prompts_path: str | Path, model_args: list[str] | tuple[str, ...], *,
                db: str | Path = "arena.sqlite", host: str = "127.0.0.1", port: int = 8100,
                api_key: str | None = None, insecure: bool = False,
                max_votes: int | None = None, params: GenParams | None = None,
                system_args: list[str] | tuple[str, ...] = (),
                max_body_bytes: int = DEFAULT_MAX_BODY, log_level: str = "warning") -> None:
    """Refuse an unsafe bind (R21), generate answers, and serve until interrupted."""
    import uvicorn

    check_bind(host, api_key, insecure)  # before any slow generation: fail fast
    check_port_free(host, port)
    store, prompt_ids, models = prepare(prompts_path, model_args, db, params or GenParams(),
                                        system_args=system_args)
    app = create_app(store, prompt_ids=prompt_ids, models=models, api_key=api_key,
                     max_votes=max_votes, max_body_bytes=max_body_bytes)
    shown = f"[{host}]" if ":" in host else host
    print(f"arena: {len(prompt_ids)} prompt(s) × {len(models)} models, votes in {db}\n"
          f"open http://{shown}:{port}/ to rate"
          f"{' (access key required)' if api_key else ''}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
