"""`tuneloop serve smollm2-135m-instruct`: the real embedded model answers and stops (R14)."""

from __future__ import annotations

import openai
import pytest
from servehelp import start_server, stop_server


@pytest.mark.integration
def test_embedded_model_answers_a_chat_question(tmp_path):
    served = start_server("smollm2-135m-instruct", tmp_path, timeout=600)
    try:
        client = openai.OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0,
                               timeout=300)
        out = client.chat.completions.create(
            model="smollm2-135m-instruct", temperature=0, max_tokens=64,
            messages=[{"role": "user", "content": "What is the capital of France?"}])
        choice = out.choices[0]
        assert "paris" in choice.message.content.lower()
        assert choice.finish_reason == "stop"  # stopped at end-of-turn, not the length cap
        assert "<|im_end|>" not in choice.message.content
    finally:
        stop_server(served.proc)
