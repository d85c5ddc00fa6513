"""Real token counts in the OpenAI-compatible responses (`usage`), through the real server: the extractive
generator's counted with the embedding model's tokenizer (checked here against that tokenizer loaded on its
own), an LLM endpoint's own usage passed through, and null (never 0) where nobody counted."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from core.embedding import local_model_dir
from tests.helpers.service import LiveServer

QUESTION = "What happens to a corrupt PDF during ingest?"


@pytest.fixture(scope="module")
def tokenizer(base_settings):
    return AutoTokenizer.from_pretrained(str(local_model_dir(base_settings.embedding_model)))


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_extractive_usage_is_the_embedding_tokenizers_count(live, tokenizer):
    body = live.http.post("/v1/query", json={"question": QUESTION, "top_k": 3}).json()
    usage, answer = body["generation"]["usage"], body["generation"]["answer"]
    read = [QUESTION] + [f"{c['title']}\n{c['text']}" if c["title"] else c["text"] for c in body["contexts"]]
    assert usage == {
        "prompt_tokens": sum(n_tokens(tokenizer, t) for t in read),
        "completion_tokens": n_tokens(tokenizer, answer),
        "total_tokens": sum(n_tokens(tokenizer, t) for t in read) + n_tokens(tokenizer, answer),
        "source": "embedding_tokenizer",
        "tokenizer": "all-MiniLM-L6-v2",
    }
    assert usage["prompt_tokens"] > 100 and usage["completion_tokens"] > 5

    # The chat facade, through the official client: the same counts for the same question and contexts.
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused")
    chat = client.chat.completions.create(
        model="rag", messages=[{"role": "user", "content": QUESTION}], extra_body={"top_k": 3}
    )
    assert chat.usage.prompt_tokens == usage["prompt_tokens"] and chat.usage.total_tokens == usage["total_tokens"]
    assert chat.usage.model_extra["source"] == "embedding_tokenizer"

    # Streamed: the final chunk carries it.
    with httpx.stream(
        "POST",
        f"{live.url}/v1/chat/completions",
        json={"model": "rag", "messages": [{"role": "user", "content": QUESTION}], "stream": True, "top_k": 3},
        timeout=60,
    ) as r:
        chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert chunks[-1]["usage"]["total_tokens"] == usage["total_tokens"]


def test_llm_usage_is_the_endpoints_own_or_unknown(base_settings, standin):
    settings = base_settings.model_copy(
        update={"llm_base_url": standin.url, "llm_model": "stand-in", "llm_timeout_s": 5.0, "llm_max_retries": 0}
    )
    server, answer = LiveServer(settings), standin.answer
    try:
        standin.mode, standin.answer = "ok", "Corrupt PDFs fail alone [1]."
        ask = {"model": "rag", "messages": [{"role": "user", "content": QUESTION}]}
        # The endpoint sends no usage: unknown, null counts, never 0.
        standin.usage = None
        got = server.http.post("/v1/chat/completions", json=ask).json()["usage"]
        assert got == {
            "prompt_tokens": None,
            "completion_tokens": None,
            "total_tokens": None,
            "source": "unknown",
            "tokenizer": None,
        }
        # It sends its own: passed through, named as the endpoint's model's count.
        standin.usage = {"prompt_tokens": 812, "completion_tokens": 9, "total_tokens": 821}
        got = server.http.post("/v1/chat/completions", json=ask).json()["usage"]
        assert got == {**standin.usage, "source": "llm_server", "tokenizer": "stand-in"}
        assert standin.requests[-1].get("stream_options") is None  # asked for only when streaming
        # Streamed: asked for with stream_options.include_usage, and in our final chunk.
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", json={**ask, "stream": True}, timeout=60) as r:
            chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        assert standin.requests[-1]["stream_options"] == {"include_usage": True}
        assert chunks[-1]["usage"] == {**standin.usage, "source": "llm_server", "tokenizer": "m"}
        # An endpoint failure: unknown.
        standin.mode = "500"
        assert server.http.post("/v1/chat/completions", json=ask).json()["usage"]["source"] == "unknown"
    finally:
        standin.mode, standin.usage, standin.answer = "ok", None, answer
        server.stop()
