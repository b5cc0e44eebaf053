"""serve checks sampling parameters with GenParams (the one validator): a 400 naming the field."""

from __future__ import annotations

import httpx
import pytest

MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("extra", "param"), [
    ({"n": 17}, "n"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": ""}, "stop"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ({"temperature": -1}, "temperature"),
    ({"seed": 2**80}, "seed"),
])
def test_out_of_range_sampling_is_a_400_naming_the_field(served_tiny, extra, param):
    """R25: a bad value is answered with an OpenAI-style 400 and the server keeps serving."""
    r = httpx.post(served_tiny.url + "/v1/chat/completions",
                   json={"model": served_tiny.model, "messages": MSG, **extra},
                   headers={"Authorization": f"Bearer {served_tiny.key}"}, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["code"] == "invalid_value"
    assert err["message"].startswith(param)
