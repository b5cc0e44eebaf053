"""`tuneloop serve` fuzzed from its own OpenAPI schema with schemathesis (R25, R21)."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

EXAMPLES = 25  # per operation and mode: bounded, seeded, the same requests on every run
SEED = 20261203


def fuzz_schema(schema_dict: dict, base_url: str, headers: dict, examples: int,
                skip: tuple[str, ...] = ()) -> Counter:
    """Send seeded schemathesis cases (valid and invalid) for every operation; count statuses.

    Fails on the first 5xx or transport error, naming the request."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_dict(schema_dict)
    counts: Counter = Counter()

    def run(op, mode) -> None:
        @seed(SEED)
        @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=mode))
        def send(case) -> None:
            resp = case.call(base_url=base_url, headers=headers, timeout=60)
            counts["sent"] += 1
            counts[f"{op.label} {resp.status_code}"] += 1
            if resp.status_code >= 500:
                counts["5xx"] += 1
            assert resp.status_code < 500, (
                f"{op.label} → {resp.status_code}: {resp.text[:300]}\n"
                f"request: {case.as_curl_command()}")

        try:
            send()
        except Unsatisfiable:  # no invalid request exists (an operation without inputs)
            assert mode == schemathesis.GenerationMode.NEGATIVE, op.label
            counts["operations without invalid inputs"] += 1

    for result in schema.get_all_operations():
        op = result.ok()
        if op.label not in skip:
            for mode in (schemathesis.GenerationMode.POSITIVE,
                         schemathesis.GenerationMode.NEGATIVE):
                run(op, mode)
    return counts


def with_request_bodies(schema: dict, bodies: dict[str, type], fixed: dict) -> dict:
    """The served schema plus a JSON requestBody per POST path, from the pydantic models the
    handlers validate with (the handlers read the raw body, so FastAPI's schema has none).

    `fixed` pins properties in valid requests (the served model name, small max_tokens and n,
    so valid cases reach the engine quickly); invalid cases still break them."""
    schema = {**schema, "components": {**schema.get("components", {})}}
    comps = schema["components"]["schemas"] = dict(schema["components"].get("schemas", {}))
    for path, model in bodies.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        comps.update(body.pop("$defs", {}))
        body["properties"].update(fixed)
        op = schema["paths"][path]["post"]
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return schema


def test_openai_server_fuzzed_from_its_openapi_schema(served_tiny):
    """R25: every operation in the server's /openapi.json gets seeded valid and invalid
    requests (bodies, types, ranges, headers) from schemathesis: no 5xx, no crash, and the
    server still answers a normal chat request afterwards. The counts are printed."""
    auth = {"Authorization": f"Bearer {served_tiny.key}"}
    schema = httpx.get(served_tiny.url + "/openapi.json", timeout=10).json()
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models"} <= set(schema["paths"])
    from tuneloop.serve.schemas import ChatCompletionRequest, CompletionRequest

    schema = with_request_bodies(
        schema, {"/v1/chat/completions": ChatCompletionRequest,
                 "/v1/completions": CompletionRequest},
        {"model": {"enum": [served_tiny.model]},
         "max_tokens": {"type": "integer", "minimum": 1, "maximum": 8},
         "max_completion_tokens": {"type": "integer", "minimum": 1, "maximum": 8},
         "n": {"type": "integer", "minimum": 1, "maximum": 2}})
    counts = fuzz_schema(schema, served_tiny.url, auth, EXAMPLES)
    assert served_tiny.proc.poll() is None, "the server process died"
    r = httpx.post(served_tiny.url + "/v1/chat/completions", headers=auth, timeout=60,
                   json={"model": served_tiny.model, "max_tokens": 4,
                         "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    print(f"\nserve fuzz: {counts['sent']} requests sent, {counts['5xx']} 5xx; "
          + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k.startswith(("GET", "POST"))))
    assert counts["sent"] >= 4 * EXAMPLES and counts["5xx"] == 0
    if any(k.endswith(" 200") for k in counts) is False:
        pytest.fail("no fuzzed request succeeded: the generator never produced a valid one")
