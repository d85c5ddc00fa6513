"""Generation through the openai client: citations checked, endpoint failures stated while retrieval
results still come back; and the official `openai` client pointed at our chat-completions facade."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.helpers.service import LiveServer


@pytest.fixture(scope="module")
def llm_live(base_settings, standin):
    settings = base_settings.model_copy(
        update={"llm_base_url": standin.url, "llm_model": "stand-in", "llm_timeout_s": 1.0, "llm_max_retries": 0}
    )
    server = LiveServer(settings)
    yield server
    server.stop()


def test_llm_answer_citations_checked(llm_live, standin):
    standin.mode = "ok"
    body = llm_live.http.post("/v1/query", json={"question": "What do cats eat?", "top_k": 3}).json()
    gen = body["generation"]
    assert gen["generator"] == "openai-compatible:stand-in" and gen["error"] is None
    assert gen["invalid_citations"] == [7] and body["answer"] == "Cats eat fish [1]. Dogs fly."
    assert [c["number"] for c in body["citations"]] == [1]
    sent = standin.requests[-1]["messages"]
    assert sent[0]["role"] == "system" and "only the numbered sources" in sent[0]["content"]
    assert '<source id="1"' in sent[-1]["content"] and sent[-1]["content"].endswith("Question: What do cats eat?")


@pytest.mark.parametrize(
    "mode, code",
    [("slow", "llm_timeout"), ("429", "llm_rate_limited"), ("500", "llm_error"), ("malformed", "llm_bad_response")],
)
def test_llm_failures_still_return_retrieval(llm_live, standin, mode, code):
    standin.mode = mode
    t0 = time.monotonic()
    r = llm_live.http.post("/v1/query", json={"question": "How are documents chunked?", "top_k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["generation"]["error"]["code"] == code and body["answer"] is None
    assert len(body["contexts"]) == 3
    assert time.monotonic() - t0 < 5  # the 1 s timeout holds; no retries configured


def test_llm_stream_cut_midway(llm_live, standin):
    standin.mode = "cut"
    with llm_live.http.stream("POST", "/v1/query", json={"question": "What do cats eat?", "stream": True}) as r:
        blocks = [b for b in r.read().decode().split("\n\n") if b.strip()]
    final = json.loads(blocks[-1].split("\n", 1)[1].removeprefix("data: "))
    assert blocks[-1].startswith("event: final")
    assert final["generation"]["error"]["code"] == "llm_stream_cut"
    assert final["generation"]["answer"].startswith("Cats eat") and final["contexts"]


def test_llm_endpoint_gone(base_settings):
    settings = base_settings.model_copy(update={"llm_base_url": "http://127.0.0.1:9/v1", "llm_max_retries": 0})
    server = LiveServer(settings)
    try:
        body = server.http.post("/v1/query", json={"question": "How are documents chunked?"}).json()
        assert body["generation"]["error"]["code"] == "llm_unavailable" and body["contexts"]
    finally:
        server.stop()


def test_openai_client_against_facade(live):
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)
    # chat front-ends list the models first: the default collection and each collection by name
    models = {m.id for m in client.models.list()}
    assert {"rag", "rag/docs"} <= models and all(m == "rag" or m.startswith("rag/") for m in models)
    # a person opening the service's address lands on the UI
    home = httpx.get(live.url + "/", follow_redirects=False)
    assert home.status_code in (302, 307) and home.headers["location"] == "/ui"
    resp = client.chat.completions.create(
        model="rag/docs", messages=[{"role": "user", "content": "What happens to a corrupt PDF during ingest?"}]
    )
    answer = resp.choices[0].message.content
    assert "[1]" in answer
    citations = resp.model_extra["citations"]
    assert citations[0]["doc_id"] == "docs/ingesting.md" and citations[0]["number"] == 1

    stream = client.chat.completions.create(
        model="rag", messages=[{"role": "user", "content": "What happens to a corrupt PDF during ingest?"}], stream=True
    )
    pieces, last = [], None
    for chunk in stream:
        last = chunk
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces).strip() == answer
    assert last.choices[0].finish_reason == "stop" and last.model_extra["citations"] == citations


def test_facade_errors(live):
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="rag/nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="rag", messages=[{"role": "system", "content": "only system"}])


def test_fewshot_examples_go_before_the_question(base_settings, standin, tmp_path):
    shots = tmp_path / "shots.jsonl"
    shots.write_text(
        json.dumps(
            {"question": "What colour is the sky?", "sources": ["The sky is blue."], "answer": "The sky is blue [1]."}
        )
        + "\n"
    )
    settings = base_settings.model_copy(
        update={"llm_base_url": standin.url, "llm_model": "stand-in", "fewshot_path": shots, "llm_max_retries": 0}
    )
    server = LiveServer(settings)
    try:
        standin.mode = "ok"
        server.http.post("/v1/query", json={"question": "What do cats eat?"})
        messages = standin.requests[-1]["messages"]
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
        assert "The sky is blue." in messages[1]["content"] and messages[2]["content"] == "The sky is blue [1]."
    finally:
        server.stop()
