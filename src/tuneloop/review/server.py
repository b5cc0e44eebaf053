"""`tuneloop review serve`: check the bind, read the round's files, record the items, serve."""

from __future__ import annotations

import sys
from pathlib import Path

from tuneloop.review.app import DEFAULT_MAX_BODY, create_app
from tuneloop.review.items import ReviewInputs, read_inputs
from tuneloop.review.store import ReviewStore
from tuneloop.serve.security import check_bind, check_port_free


def prepare(result: str | Path, db: str | Path, *, rows: str | Path | None = None,
            targets: str | Path | None = None) -> tuple[ReviewStore, ReviewInputs]:
    """Read and check the inputs, open `db` and record the items; (store, inputs)."""
    inputs = read_inputs(result, rows, targets)  # bad input stops before the db is touched
    store = ReviewStore(db)
    try:
        store.add_items([*inputs.cases, *inputs.rows])
    except BaseException:
        store.close()
        raise
    return store, inputs


def serve_review(result: str | Path, *, rows: str | Path | None = None,
                 targets: str | Path | None = None, db: str | Path = "review.sqlite",
                 host: str = "127.0.0.1", port: int = 8200, api_key: str | None = None,
                 insecure: bool = False, max_body_bytes: int = DEFAULT_MAX_BODY,
                 log_level: str = "warning") -> None:
    """Refuse an unsafe bind (R21), record the items, and serve until interrupted."""
    import uvicorn

    check_bind(host, api_key, insecure)
    check_port_free(host, port)
    store, inputs = prepare(result, db, rows=rows, targets=targets)
    app = create_app(store, inputs, api_key=api_key, max_body_bytes=max_body_bytes)
    shown = f"[{host}]" if ":" in host else host
    folded = (f" ({inputs.duplicate_rows} identical row(s) shown once)"
              if inputs.duplicate_rows else "")
    for note in inputs.notes:
        print(note, file=sys.stderr)
    print(f"review: {len(inputs.cases)} failed case(s) ({inputs.passed_cases} passed), "
          f"{len(inputs.rows)} generated row(s){folded}; saves in {db}\n"
          f"open http://{shown}:{port}/ to review"
          f"{' (access key required)' if api_key else ''}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
