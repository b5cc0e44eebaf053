"""`tuneloop serve` fuzzed from its own OpenAPI schema with schemathesis (R25, R21)."""

from __future__ import annotations

import httpx
import pytest
from fuzz.schemafuzz import fuzz_schema, with_request_bodies

EXAMPLES = 25  # per operation and mode: bounded, seeded, the same requests on every run


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
