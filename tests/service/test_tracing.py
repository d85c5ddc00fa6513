"""OpenTelemetry tracing through the real service into a real OTLP/HTTP receiver: a loopback HTTP server that
takes POST /v1/traces and decodes the protobuf body (opentelemetry-proto's ExportTraceServiceRequest), as
Phoenix's or Langfuse's collector does. One /v1/query gives one trace whose spans nest as
rag.query > retrieve > embed/sparse/dense/fusion, rag.query > generate, with OpenInference's attributes; an
audit job's case adds audit.case > judge. Off (no endpoint), nothing is sent."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from core import tracing
from tests.helpers.service import LiveServer

QUESTION = "What happens to a corrupt PDF during ingest?"


class Receiver:
    """An OTLP/HTTP trace receiver on loopback: every span it was sent, with its attributes decoded."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.requests = 0
        self.content_types: set[str] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                outer.content_types.add(self.headers.get("Content-Type"))
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                outer.requests += 1
                for rs in req.resource_spans:
                    resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            outer.spans.append(
                                {
                                    "name": s.name,
                                    "trace_id": s.trace_id.hex(),
                                    "span_id": s.span_id.hex(),
                                    "parent_id": s.parent_span_id.hex() or None,
                                    "start": s.start_time_unix_nano,
                                    "end": s.end_time_unix_nano,
                                    "attributes": {a.key: _value(a.value) for a in s.attributes},
                                    "resource": resource,
                                }
                            )
                data = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            tracing.flush()
            if predicate(self.spans):
                return self.spans
            assert time.monotonic() < deadline, [s["name"] for s in self.spans]
            time.sleep(0.2)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def traced(base_settings, receiver):
    server = LiveServer(base_settings.model_copy(update={"otel_endpoint": receiver.url}))
    yield server
    server.stop()
    tracing.configure(base_settings)  # off again for the modules after this one


def test_a_query_is_one_trace_of_openinference_spans(traced, receiver):
    body = traced.http.post("/v1/query", json={"question": QUESTION, "top_k": 3}).json()
    spans = receiver.wait_for(lambda ss: any(s["name"] == "rag.query" for s in ss))
    root = next(s for s in spans if s["name"] == "rag.query")
    trace = [s for s in spans if s["trace_id"] == root["trace_id"]]
    by_name = {s["name"]: s for s in trace}
    assert set(by_name) == {"rag.query", "retrieve", "embed", "sparse", "dense", "fusion", "generate"}
    assert receiver.content_types == {"application/x-protobuf"}
    assert root["resource"]["service.name"] == "rag-why" and root["parent_id"] is None

    # Structure: rag.query > retrieve > embed, sparse, dense, fusion; rag.query > generate.
    def parent(name):
        return next(s["name"] for s in trace if s["span_id"] == by_name[name]["parent_id"])

    assert parent("retrieve") == parent("generate") == "rag.query"
    assert {parent(n) for n in ("embed", "sparse", "dense", "fusion")} == {"retrieve"}
    assert root["start"] <= by_name["retrieve"]["start"] <= by_name["generate"]["start"] <= root["end"]

    kinds = {n: s["attributes"]["openinference.span.kind"] for n, s in by_name.items()}
    assert kinds == {
        "rag.query": "CHAIN",
        "retrieve": "RETRIEVER",
        "embed": "EMBEDDING",
        "sparse": "RETRIEVER",
        "dense": "RETRIEVER",
        "fusion": "RETRIEVER",
        "generate": "LLM",
    }
    a = root["attributes"]
    assert a["input.value"] == QUESTION and a["output.value"] == body["answer"] and a["rag.collection"] == "docs"

    # The contexts the answer was given, as OpenInference documents: id, score, content.
    r = by_name["retrieve"]["attributes"]
    for i, c in enumerate(body["contexts"]):
        assert r[f"retrieval.documents.{i}.document.id"] == c["chunk_id"]
        assert r[f"retrieval.documents.{i}.document.score"] == pytest.approx(c["score"])
        assert r[f"retrieval.documents.{i}.document.content"] == c["text"]
    assert "retrieval.documents.3.document.id" not in r  # top_k 3
    # Each stage's own ranking: fusion's first is the first context; every stage lists at most 10.
    f = by_name["fusion"]["attributes"]
    assert f["retrieval.documents.0.document.id"] == body["contexts"][0]["chunk_id"] and f["rag.fusion"] == "dbsf"
    assert "retrieval.documents.9.document.id" in f and "retrieval.documents.10.document.id" not in f
    assert '"doc_id": "docs/' in by_name["sparse"]["attributes"]["retrieval.documents.0.document.metadata"]
    e = by_name["embed"]["attributes"]
    assert e["embedding.model_name"] == "all-MiniLM-L6-v2" and e["embedding.embeddings.0.embedding.text"] == QUESTION

    # The answer, with the token counts of the usage the response reports.
    g, usage = by_name["generate"]["attributes"], body["generation"]["usage"]
    assert g["output.value"] == body["answer"] and g["llm.model_name"] == "extractive"
    assert g["llm.token_count.prompt"] == usage["prompt_tokens"] > 0
    assert g["llm.token_count.completion"] == usage["completion_tokens"] > 0
    assert g["llm.token_count.total"] == usage["total_tokens"]
    assert g["llm.output_messages.0.message.content"] == body["answer"]


def test_a_streamed_query_and_an_audits_judge(traced, receiver):
    with traced.http.stream("POST", "/v1/query", json={"question": QUESTION, "stream": True}) as r:
        assert r.status_code == 200 and "event: final" in "".join(r.iter_text())
    audit = {
        "collection": "docs",
        "generate": True,
        "ks": [1, 3],
        "cases": [{"id": "pdf", "question": QUESTION, "expected": [{"doc_id": "docs/ingesting.md"}]}],
    }
    job = traced.http.post("/v1/audits", json=audit).json()
    deadline = time.monotonic() + 120
    while traced.http.get(f"/v1/audits/{job['id']}").json()["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    spans = receiver.wait_for(
        lambda ss: any(s["name"] == "audit.case" for s in ss) and sum(s["name"] == "rag.query" for s in ss) >= 2
    )
    # The stream: its own trace, generate under rag.query.
    roots = [s for s in spans if s["name"] == "rag.query"]
    streamed = roots[-1]
    children = {s["name"] for s in spans if s["parent_id"] == streamed["span_id"]}
    assert children == {"retrieve", "generate"}
    # The audit case: audit.case > retrieve, generate, judge (EVALUATOR), in a session.
    case = next(s for s in spans if s["name"] == "audit.case")
    under = {s["name"]: s for s in spans if s["parent_id"] == case["span_id"]}
    assert {"retrieve", "generate", "judge"} <= set(under)
    assert under["judge"]["attributes"]["openinference.span.kind"] == "EVALUATOR"
    assert under["judge"]["attributes"]["rag.judge"] and "rag.faithfulness" in under["judge"]["attributes"]
    assert case["attributes"]["rag.case_id"] == "pdf" and case["attributes"]["session.id"]
    assert case["attributes"]["output.value"] == case["attributes"]["rag.verdict"]


def test_off_by_default_sends_nothing(live, receiver):
    """The plain server (no endpoint): tracing is off and its queries reach no receiver."""
    before = len(receiver.spans)
    assert live.http.post("/v1/query", json={"question": QUESTION}).status_code == 200
    assert not tracing.enabled() and tracing.span("x", tracing.CHAIN) is tracing.OFF
    time.sleep(0.5)
    assert len(receiver.spans) == before
