"""Schema-driven HTTP fuzzing with schemathesis, shared by the serve and arena fuzz tests."""

from __future__ import annotations

from collections import Counter

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
