"""Conversations through the live API (real uvicorn, real Qdrant Edge, the real model, a real MTRAG slice):
`/v1/query` takes `history` and reports the `rewrite`; the chat facade passes the whole conversation; an LLM
rewrite that fails falls back to the offline one (a wire-level stand-in for the endpoint)."""

from __future__ import annotations

import json

import openai
import pytest

from core.settings import Settings
from core.store import open_store
from diagnostics.metrics import dedupe
from ingest.pipeline import Ingestor
from tests.helpers.mtrag import FOLLOW_UP, mtrag_slice
from tests.helpers.service import LiveServer

JOINED = "Was the competition only about drama? When did it take place?"
HISTORY = [{"role": t.role, "content": t.text} for t in FOLLOW_UP["history"]]


@pytest.fixture(scope="module")
def base_settings(tmp_path_factory, embedder) -> Settings:
    """Overrides the package's: an MTRAG slice as the default collection."""
    tmp = tmp_path_factory.mktemp("conv")
    settings = Settings(data_dir=tmp / "data", collection="mtrag", _env_file=None)
    with open_store(settings) as store:
        Ingestor(settings, store, embedder).run([mtrag_slice(tmp / "corpus.jsonl")], "mtrag")
    return settings


def docs(body: dict) -> list[str]:
    return dedupe([c["doc_id"] for c in body["contexts"]])[:5]


def test_query_with_history_is_rewritten(live):
    body = live.http.post(
        "/v1/query", json={"question": FOLLOW_UP["question"], "history": HISTORY, "top_k": 20, "generate": False}
    ).json()
    rw = body["rewrite"]
    assert rw["method"] == "offline" and rw["query"] == JOINED and rw["question"] == FOLLOW_UP["question"]
    assert body["question"] == FOLLOW_UP["question"] and FOLLOW_UP["relevant"] in docs(body)
    assert body["timings_ms"]["rewrite"] > 0

    off = live.http.post(
        "/v1/query",
        json={"question": FOLLOW_UP["question"], "history": HISTORY, "top_k": 20, "generate": False, "rewrite": False},
    ).json()
    assert off["rewrite"]["method"] == "off" and FOLLOW_UP["relevant"] not in docs(off)
    alone = live.http.post("/v1/query", json={"question": FOLLOW_UP["question"], "generate": False}).json()
    assert alone["rewrite"] is None


def test_query_stream_final_event_carries_the_rewrite(live):
    with live.http.stream(
        "POST", "/v1/query", json={"question": FOLLOW_UP["question"], "history": HISTORY, "stream": True}
    ) as r:
        text = "".join(r.iter_text())
    final = json.loads(text.split("event: final\ndata: ")[1].split("\n\n")[0])
    assert final["rewrite"]["query"] == JOINED and final["question"] == FOLLOW_UP["question"]


@pytest.mark.parametrize(
    "history, status, code",
    [
        ([{"role": "user", "content": "x"}] * 51, 400, "history_too_long"),
        ([{"role": "user", "content": "\ud800"}], 422, "invalid_request"),
        ([{"role": "tool", "content": "x"}], 422, "invalid_request"),
        ([{"role": "user", "content": 3}], 422, "invalid_request"),
    ],
)
def test_bad_history_is_refused(live, history, status, code):
    body = json.dumps({"question": "When?", "history": history})  # ASCII-escaped: a lone surrogate survives
    r = live.http.post("/v1/query", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and r.json()["error"]["code"] == code


def test_chat_facade_passes_the_conversation(live):
    client = openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused")
    messages = [
        {"role": "system", "content": "Be brief."},
        *HISTORY,
        {"role": "user", "content": "When did it take place?"},
    ]
    resp = client.chat.completions.create(model="rag", messages=messages)
    rw = resp.model_extra["rewrite"]
    assert rw["query"] == JOINED and rw["history_turns"] == 1
    assert FOLLOW_UP["relevant"] in [c["doc_id"] for c in resp.model_extra["citations"]] or (
        "do not contain" in resp.choices[0].message.content
    )
    # Only the last user message is the question; a single message has no history and no rewrite.
    single = client.chat.completions.create(model="rag", messages=[{"role": "user", "content": "When did it?"}])
    assert single.model_extra["rewrite"] is None

    chunks = list(client.chat.completions.create(model="rag", messages=messages, stream=True))
    assert chunks[-1].model_extra["rewrite"]["query"] == JOINED


@pytest.fixture(scope="module")
def llm_live(base_settings, standin):
    settings = base_settings.model_copy(
        update={
            "llm_base_url": standin.url,
            "llm_model": "stand-in",
            "llm_timeout_s": 5.0,
            "llm_max_retries": 0,
            "rewrite_llm_timeout_s": 0.5,
        }
    )
    server = LiveServer(settings)
    yield server
    server.stop()


def test_llm_rewrite_through_the_api(llm_live, standin):
    standin.mode, standin.answer = "ok", "When did the drama competition take place?"
    body = llm_live.http.post(
        "/v1/query", json={"question": FOLLOW_UP["question"], "history": HISTORY, "generate": False}
    ).json()
    assert body["rewrite"]["method"] == "llm" and body["rewrite"]["query"] == standin.answer
    assert body["rewrite"]["fallback"] is None


@pytest.mark.parametrize("mode, code", [("500", "llm_error"), ("slow", "llm_timeout")])
def test_llm_rewrite_failure_falls_back_to_offline(llm_live, standin, mode, code):
    standin.mode = mode
    body = llm_live.http.post(
        "/v1/query", json={"question": FOLLOW_UP["question"], "history": HISTORY, "top_k": 20, "generate": False}
    ).json()
    rw = body["rewrite"]
    assert rw["fallback"]["code"] == code and rw["method"] == "offline" and rw["query"] == JOINED
    assert FOLLOW_UP["relevant"] in docs(body)
