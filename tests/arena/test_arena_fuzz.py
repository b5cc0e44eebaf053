"""The arena fuzzed from its OpenAPI schema (plus its form bodies) with schemathesis (R25)."""

from __future__ import annotations

import httpx
from arenahelp import Rater
from fuzz.schemafuzz import fuzz_schema

from tuneloop.arena.app import COOKIE, MAX_NAME, MAX_REASON
from tuneloop.arena.store import WINNERS

EXAMPLES = 25  # per operation and mode


def _form(properties: dict, required: list[str]) -> dict:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "properties": properties, "required": required}}}}


def test_arena_fuzzed_from_its_openapi_schema(prepared, arena_url):
    """R25: seeded valid and invalid requests for every arena route (the app's own
    OpenAPI schema, with the login/vote/skip form bodies the handlers read) sent by a logged-in
    rater, valid ones carrying its real battle id and CSRF token: no 5xx, and the server still
    serves the rater its next battle. The counts are printed."""
    from tuneloop.arena.app import create_app

    app = create_app(prepared.store, prompt_ids=prepared.prompt_ids, models=prepared.models)
    schema = app.openapi()  # the arena serves no /openapi.json; the same document, in-process
    rater = Rater(arena_url, "fuzzer")
    battle_id, csrf, _ = rater.battle()
    text = {"type": "string"}
    paths = schema["paths"]
    paths["/login"]["post"]["requestBody"] = _form(
        {"name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME}, "key": text},
        ["name"])
    paths["/vote"]["post"]["requestBody"] = _form(
        {"battle_id": {"enum": [battle_id]}, "csrf": {"enum": [csrf]},
         "choice": {"enum": list(WINNERS)}, "reason": {"type": "string", "maxLength": MAX_REASON}},
        ["battle_id", "csrf", "choice"])
    paths["/skip"]["post"]["requestBody"] = _form(
        {"battle_id": {"enum": [battle_id]}, "csrf": {"enum": [csrf]}}, ["battle_id", "csrf"])
    cookie = {"Cookie": f"{COOKIE}={rater.http.cookies[COOKIE]}"}
    counts = fuzz_schema(schema, arena_url, cookie, EXAMPLES)
    assert httpx.get(arena_url + "/health", timeout=10).status_code == 200
    next_id, _, page = rater.battle()  # the app still serves pages to the same rater
    assert next_id and "<form" in page
    rater.close()
    print(f"\narena fuzz: {counts['sent']} requests sent, {counts['5xx']} 5xx; "
          + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())
                      if k.startswith(("GET", "POST"))))
    assert counts["sent"] >= 5 * EXAMPLES and counts["5xx"] == 0
