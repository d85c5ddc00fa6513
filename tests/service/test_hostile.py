"""Hostile clients (issue 8), through real HTTP on loopback against a real uvicorn, store and model.

Keys, rate limits and sizes are decided before any body byte is read; failed authentications are rate-limited
per client address; every malformed input is a 4xx JSON error with a stable code, never a 500 or a server path.
"""

from __future__ import annotations

import http.client
import json
import math
import time
from urllib.parse import urlsplit

import pytest
from qdrant_client import models

from core.errors import StoreError
from core.settings import Settings
from core.store import open_store
from core.store.base import CollectionSpec
from ingest.pipeline import Ingestor
from tests.conftest import ROOT
from tests.helpers.service import LiveServer

KEYS = {"docs-key": ["docs"], "sci-key": ["scifact"], "admin-key": ["*"]}
DOCS = {"X-API-Key": "docs-key"}
BODY_LIMIT = 50_000  # max_body_mb = 0.05
UPLOAD_MB, UPLOAD_FILES = 0.1, 2  # uploads may carry 2 x (100 kB + multipart framing)


@pytest.fixture(scope="module")
def guarded(base_settings):
    server = LiveServer(
        base_settings.model_copy(
            update={
                "api_keys": KEYS,
                "max_body_mb": BODY_LIMIT / 1e6,
                "max_upload_mb": UPLOAD_MB,
                "max_upload_files": UPLOAD_FILES,
                "auth_failures_per_minute": 5,
            }
        )
    )
    yield server
    server.stop()


def client_at(address: str) -> dict:
    """uvicorn trusts X-Forwarded-For from 127.0.0.1 (its default, and the tests' proxy): each test that counts
    failures speaks from an address of its own, as clients behind a proxy do."""
    return {"X-Forwarded-For": address}


def assert_error(r, status: int, code: str) -> dict:
    """A 4xx JSON error with this stable code, no stack trace and no server path."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    body = r.json()
    assert body["error"]["code"] == code and isinstance(body["error"]["message"], str), body
    text = r.text
    assert "Traceback" not in text and "/tmp" not in text and str(ROOT) not in text and "site-packages" not in text
    return body


def raw_request(url: str, method: str, path: str, headers: dict, chunks: list[bytes] | None = None):
    """Headers, then (optionally) a chunked body, then read the response. With a declared Content-Length and
    no chunks the body is never sent: a server that waited for it would time out here."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
    t0 = time.monotonic()
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        if chunks is not None:
            try:
                for c in chunks:
                    conn.send(b"%x\r\n%s\r\n" % (len(c), c))
                conn.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):  # the server answered and hung up: read its answer
                pass
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, dict(resp.getheaders()), body, time.monotonic() - t0
    finally:
        conn.close()


# -- before the body --------------------------------------------------------------------------------------------


def test_401_before_a_400_mb_body_is_read(guarded):
    status, _, body, seconds = raw_request(
        guarded.url, "POST", "/v1/query", {"Content-Type": "application/json", "Content-Length": "400000000"}
    )
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
    assert seconds < 5  # answered from the headers: the 400 MB were never sent


def test_declared_size_over_the_limit_is_413_before_the_body(guarded):
    headers = {**DOCS, "Content-Type": "application/json", "Content-Length": str(BODY_LIMIT + 1)}
    status, _, body, seconds = raw_request(guarded.url, "POST", "/v1/query", headers)
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large" and seconds < 5


def test_a_300_mb_upload_is_refused_before_it_is_spooled(guarded):
    headers = {**DOCS, "Content-Type": "multipart/form-data; boundary=xyz", "Content-Length": "300000000"}
    status, _, body, seconds = raw_request(guarded.url, "POST", "/v1/collections/docs/documents", headers)
    assert status == 413 and json.loads(body)["error"]["code"] == "upload_too_large" and seconds < 5


def test_uploads_and_audits_have_their_own_larger_limits(guarded):
    # 80 kB: over the JSON limit, under one upload's; a real job starts.
    files = [("files", ("big.txt", b"Rivers carry water to the sea. " * 2600, "text/plain"))]
    r = guarded.http.post("/v1/collections/docs/documents", headers=DOCS, files=files)
    assert r.status_code == 202, r.text
    # A JSON body of the same size is refused.
    r = guarded.http.post("/v1/query", headers=DOCS, json={"question": "x" * 80_000})
    assert_error(r, 413, "body_too_large")
    # An audit's golden set and corpus ids may be larger (max_audit_body_mb): this 200 kB one is read, and
    # refused for what it says (ks of 0), not for its size.
    audit = {"collection": "docs", "cases": [{"id": "q", "question": "x"}], "ks": [0]}
    r = guarded.http.post("/v1/audits", headers=DOCS, json={**audit, "corpus": [f"d{i:08d}" for i in range(20_000)]})
    assert_error(r, 400, "invalid_parameters")


def test_chunked_bodies_are_cut_off_at_the_limit(guarded):
    headers = {**DOCS, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    chunks = [b'{"question": "' + b"x" * 4096] + [b"x" * 4096] * (BODY_LIMIT // 4096 + 4)
    status, _, body, _ = raw_request(guarded.url, "POST", "/v1/query", headers, chunks)
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"
    # A chunked upload past the upload limit, too: a form field that is not a file (no per-file limit applies
    # to it; the route's own per-request limit is 200 MB), so only the guard's count can stop it.
    limit = int(UPLOAD_MB * UPLOAD_FILES * 1e6 + 64 * 1024 + 2 * 1024 * UPLOAD_FILES)
    head = b'--xyz\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
    upload = {**DOCS, "Content-Type": "multipart/form-data; boundary=xyz", "Transfer-Encoding": "chunked"}
    status, _, body, _ = raw_request(
        guarded.url, "POST", "/v1/collections/docs/documents", upload, [head] + [b"y" * 65536] * (limit // 65536 + 2)
    )
    assert status == 413 and json.loads(body)["error"]["code"] == "upload_too_large"
    # A chunked body under the limit is served as any other.
    small = json.dumps({"question": "How are documents chunked?", "generate": False}).encode()
    status, _, body, _ = raw_request(guarded.url, "POST", "/v1/query", headers, [small[:10], small[10:]])
    assert status == 200 and json.loads(body)["contexts"]


def test_failed_authentications_are_rate_limited_per_address(guarded):
    attacker, neighbour = client_at("203.0.113.7"), client_at("203.0.113.8")
    codes = [
        guarded.http.get("/v1/collections", headers={**attacker, "X-API-Key": f"guess-{i}"}).status_code
        for i in range(8)
    ]
    assert codes == [401] * 5 + [429] * 3
    r = guarded.http.get("/v1/collections", headers={**attacker, "X-API-Key": "guess-9"})
    body = assert_error(r, 429, "rate_limited")
    assert "failed authentications" in body["error"]["message"] and int(r.headers["Retry-After"]) >= 1
    # While the bucket is empty even the right key gets no answer from that address (guessing learns nothing),
    assert guarded.http.get("/v1/collections", headers={**attacker, **DOCS}).status_code == 429
    # and no key at all counts as a failure too; another address is not affected.
    assert guarded.http.get("/v1/collections", headers=neighbour).status_code == 401
    assert guarded.http.get("/v1/collections", headers={**neighbour, **DOCS}).status_code == 200
    # A 400 MB body from the blocked address gets its 429 from the headers alone.
    headers = {**attacker, "Content-Type": "application/json", "Content-Length": "400000000"}
    assert raw_request(guarded.url, "POST", "/v1/query", headers)[0] == 429


def test_successful_requests_never_spend_failure_tokens(guarded):
    me = client_at("203.0.113.20")
    assert all(guarded.http.get("/v1/collections", headers={**me, **DOCS}).status_code == 200 for _ in range(12))


# -- malformed inputs: 4xx with a stable code -------------------------------------------------------------------


def post_raw(server, path: str, text: str, headers: dict | None = None):
    """A body sent as written (JSON with a lone surrogate escape, NaN, 65-bit integers)."""
    return server.http.post(
        path, content=text.encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )


@pytest.mark.parametrize("question", ['"\\ud800"', '"why \\udfff is it so?"', '"\\ud83d"'])
def test_lone_surrogate_in_the_question(live, question):
    r = post_raw(live, "/v1/query", '{"question": %s}' % question)
    assert_error(r, 400, "invalid_text")
    r = post_raw(live, "/v1/query", '{"question": %s, "stream": true}' % question)
    assert_error(r, 400, "invalid_text")
    chat = '{"messages": [{"role": "user", "content": %s}]}' % question
    assert_error(post_raw(live, "/v1/chat/completions", chat), 400, "invalid_text")


@pytest.mark.parametrize(
    "filters, status, code",
    [
        ('{"doc_id": 18446744073709551616}', 400, "invalid_parameters"),  # 2**64
        ('{"doc_id": 9223372036854775808}', 400, "invalid_parameters"),  # 2**63
        ('{"doc_id": -9223372036854775809}', 400, "invalid_parameters"),
        ('{"doc_id": [1, 123456789012345678901234567890]}', 400, "invalid_parameters"),
        ('{"": "x"}', 400, "invalid_parameters"),
        ('{"a..b": "x"}', 400, "invalid_parameters"),
        ('{"\\ud800": "x"}', 400, "invalid_parameters"),
        ('{"doc_id": "\\ud800"}', 400, "invalid_parameters"),
        ('{"doc_id": [1, "x"]}', 422, "invalid_request"),
        ('{"doc_id": 1.5}', 422, "invalid_request"),
        ('{"doc_id": {"$ne": 1}}', 422, "invalid_request"),
        ('["doc_id"]', 422, "invalid_request"),
    ],
)
def test_malformed_filters(live, filters, status, code):
    r = post_raw(live, "/v1/query", '{"question": "chunking", "generate": false, "filters": %s}' % filters)
    assert_error(r, status, code)


def test_filters_at_the_64_bit_edges_are_fine(live):
    for value in (2**63 - 1, -(2**63), [0, 2**63 - 1]):
        r = live.http.post("/v1/query", json={"question": "chunking", "generate": False, "filters": {"page": value}})
        assert r.status_code == 200 and r.json()["contexts"] == []


@pytest.mark.parametrize(
    "weights",
    ["[0, 1]", "[1, 0]", "[-1, 1]", "[NaN, 1]", "[1, Infinity]", "[-Infinity, 1]", "[1e999, 1]", "[0.0, 0.0]"],
)
def test_fusion_weights_zero_negative_or_not_finite(live, weights):
    body = '{"question": "chunking", "fusion": {"method": "rrf", "weights": %s}}' % weights
    assert_error(post_raw(live, "/v1/query", body), 400, "invalid_parameters")
    assert_error(post_raw(live, "/v1/query", body[:-1] + ', "stream": true}'), 400, "invalid_parameters")


@pytest.mark.parametrize(
    "field, value",
    [
        ("top_k", '"5"'),
        ("top_k", "true"),
        ("top_k", "5.0"),
        ("top_k", "1e3"),
        ("candidates", '"10"'),
        ("candidates", "false"),
        ("fusion", '{"rrf_k": "60"}'),
        ("fusion", '{"rrf_k": true}'),
        ("fusion", '{"weights": ["1", "1"]}'),
        ("fusion", '{"weights": [true, 1]}'),
        ("rerank", '"false"'),
        ("generate", "0"),
        ("stream", '"true"'),
        ("question", "5"),
        ("question", "null"),
        ("mode", '"bm25"'),
    ],
)
def test_no_coercion_of_strings_or_booleans(live, field, value):
    body = json.loads('{"question": "chunking"}')
    text = json.dumps(body)[:-1] + f', "{field}": {value}}}' if field != "question" else '{"question": %s}' % value
    assert_error(post_raw(live, "/v1/query", text), 422, "invalid_request")


def test_over_long_names(live):
    for name in ("c" * 65, "c" * 5000):
        assert_error(live.http.post("/v1/query", json={"question": "x", "collection": name}), 422, "invalid_request")
        assert_error(live.http.get(f"/v1/collections/{name}/documents"), 422, "invalid_request")
        files = [("files", ("a.txt", b"text", "text/plain"))]
        assert_error(live.http.post(f"/v1/collections/{name}/documents", files=files), 422, "invalid_request")
    # Job and audit ids of any length and alphabet (over a file name's 255 bytes, too): no such job.
    for job_id in ("a" * 300, "é" * 200, "a-" * 3000, "%00" * 10, "..%2e%2e"):
        assert_error(live.http.get("/v1/jobs/" + job_id), 404, "job_not_found")
        assert_error(live.http.get("/v1/audits/" + job_id), 404, "audit_not_found")
    # An upload's file name (or one part of its path) over 255 bytes.
    for name in ("n" * 1000 + ".txt", "d/" + "é" * 200 + ".txt"):
        files = [("files", (name, b"some text", "text/plain"))]
        assert_error(live.http.post("/v1/collections/docs/documents", files=files), 400, "invalid_filename")


@pytest.mark.parametrize(
    "message",
    [
        {"role": "user", "content": [1, "x", {"type": "text", "text": 5}]},
        {"role": "user", "content": [{"type": "text", "text": 5}]},
        {"role": "user", "content": [{"type": "text", "text": ["a"]}]},
        {"role": "user", "content": [{"type": "text"}]},
        {"role": "user", "content": [{"text": "no type"}]},
        {"role": "user", "content": ["x"]},
        {"role": "user", "content": 5},
        {"role": "user", "content": {"type": "text", "text": "x"}},
        {"role": 5, "content": "x"},
        {"content": "x"},
        "just a string",
    ],
)
def test_chat_content_of_the_wrong_type(live, message):
    for stream in (False, True):
        r = live.http.post("/v1/chat/completions", json={"messages": [message], "stream": stream})
        assert_error(r, 422, "invalid_request")


def test_chat_parts_of_other_types_are_ignored(live):
    content = [{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "How are documents chunked?"}]
    r = live.http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": content}]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    "extra",
    [
        {"top_k": "5"},
        {"top_k": True},
        {"top_k": 0},
        {"stream": "true"},
        {"stream": 1},
        {"model": 5},
        {"model": "rag/" + "x" * 500},
        {"messages": []},
    ],
)
def test_chat_strict_fields(live, extra):
    r = live.http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}], **extra})
    assert_error(r, 422, "invalid_request")


@pytest.mark.parametrize("model", ["gpt-4", "rag/", "rag/../docs", "rag/a b", "RAG", "rag/" + "x" * 65, "rag/docs/x"])
def test_chat_model_not_a_collection_is_invalid_model(live, model):
    for stream in (False, True):
        body = {"model": model, "messages": [{"role": "user", "content": "chunking"}], "stream": stream}
        assert_error(live.http.post("/v1/chat/completions", json=body), 400, "invalid_model")


def test_chat_never_falls_back_to_the_default_collection(guarded, live):
    ask = {"messages": [{"role": "user", "content": "How are documents chunked?"}]}
    # No such collection: 404, streamed or not.
    for stream in (False, True):
        r = live.http.post("/v1/chat/completions", json={**ask, "model": "rag/nope", "stream": stream})
        assert_error(r, 404, "collection_not_found")
    # A collection the key may not use: 403, also for "rag" when the default collection is out of its scope.
    sci = {"X-API-Key": "sci-key"}
    for model in ("rag/docs", "rag"):
        for stream in (False, True):
            r = guarded.http.post("/v1/chat/completions", headers=sci, json={**ask, "model": model, "stream": stream})
            assert_error(r, 403, "forbidden")
    # The one it may use answers from that collection.
    r = guarded.http.post("/v1/chat/completions", headers=sci, json={**ask, "model": "rag/scifact"})
    assert r.status_code == 200 and r.json()["model"] == "rag/scifact"
    assert all(c["doc_id"] for c in r.json()["citations"])


def test_streams_fail_before_they_start(live):
    """Validation, a missing collection and bad parameters are HTTP errors, not a 200 stream that breaks."""
    cases = [
        ({"question": "x", "stream": True, "top_k": 0}, 422, "invalid_request"),
        ({"question": "x", "stream": True, "collection": "nope"}, 404, "collection_not_found"),
        ({"question": "x", "stream": True, "filters": {"doc_id": 2**64}}, 400, "invalid_parameters"),
        ({"question": "   ", "stream": True}, 400, "empty_question"),
    ]
    for body, status, code in cases:
        with live.http.stream("POST", "/v1/query", json=body) as r:
            r.read()
            assert r.headers["content-type"].startswith("application/json")
            assert_error(r, status, code)


def test_a_good_stream_still_streams(live):
    with live.http.stream("POST", "/v1/query", json={"question": "How are documents chunked?", "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line.split(": ", 1)[1] for line in r.iter_lines() if line.startswith("event: ")]
    assert events[0] == "retrieval" and events[-1] == "final" and "error" not in events
    body = {"messages": [{"role": "user", "content": "How are documents chunked?"}], "stream": True}
    with live.http.stream("POST", "/v1/chat/completions", json=body) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert json.loads(lines[0][6:])["choices"][0]["delta"]["role"] == "assistant" and lines[-1] == "data: [DONE]"


def test_junk_bodies(live):
    for text in ("", "{", "null", "[]", '"x"', "1e999999", '{"question": "x"' + "]" * 10, "\xff\xfe"):
        r = live.http.post("/v1/query", content=text.encode("latin-1"), headers={"Content-Type": "application/json"})
        assert 400 <= r.status_code < 500 and r.json()["error"]["code"] in ("invalid_request", "invalid_body"), text
    deep = "[" * 100_000 + "]" * 100_000  # under the size limit, over any parser's nesting
    r = live.http.post("/v1/query", content=deep.encode(), headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500 and r.json()["error"]["code"] in ("invalid_request", "invalid_body")


def test_the_service_is_still_fine(live):
    """After all of the above, on the same server."""
    r = live.http.post("/v1/query", json={"question": "How are documents chunked?", "generate": False})
    assert r.status_code == 200 and r.json()["contexts"]
    assert live.http.get("/readyz").status_code == 200
    metrics = live.http.get("/metrics").text
    assert 'outcome="internal_error"' not in metrics


# -- other applications' collections on the same Qdrant -------------------------------------------------------


def test_foreign_collections_are_skipped(tmp_path, embedder):
    settings = Settings(data_dir=tmp_path / "data", store="local", collection="docs", _env_file=None)
    with open_store(settings) as store:
        Ingestor(settings, store, embedder).run([ROOT / "docs"], "docs")
        # Another application's collections, made with qdrant-client directly: no metadata, and metadata of
        # its own.
        store.client.create_collection("their_vectors", vectors_config=models.VectorParams(size=4, distance="Dot"))
        store.client.create_collection(
            "their_other", vectors_config=models.VectorParams(size=4, distance="Dot"), metadata={"owner": "crm"}
        )
        assert store.list_collections() == ["docs"]
        assert store.get_spec("their_vectors") is None and store.get_spec("their_other") is None
        spec = store.get_spec("docs")
        with pytest.raises(StoreError):  # never written into
            store.ensure_collection(
                "their_vectors", CollectionSpec(spec.dense_dim, spec.embedding, spec.chunker, spec.sparse)
            )
        assert store.client.get_collection("their_vectors").points_count == 0
    server = LiveServer(settings)
    try:
        r = server.http.get("/v1/collections")
        assert r.status_code == 200 and [c["name"] for c in r.json()] == ["docs"]
        assert_error(
            server.http.post("/v1/query", json={"question": "x", "collection": "their_vectors"}),
            404,
            "collection_not_found",
        )
        chat = {"model": "rag/their_other", "messages": [{"role": "user", "content": "x"}]}
        assert_error(server.http.post("/v1/chat/completions", json=chat), 404, "collection_not_found")
        assert_error(server.http.get("/v1/collections/their_vectors/documents"), 404, "collection_not_found")
        r = server.http.post("/v1/query", json={"question": "How are documents chunked?", "generate": False})
        assert r.status_code == 200 and r.json()["contexts"]
    finally:
        server.stop()


def test_token_bucket_spend_and_wait():
    from service.ratelimit import RateLimiter

    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0], max_buckets=4)
    for _ in range(60):
        assert limiter.wait("a") == 0
        limiter.spend("a")
    assert math.isclose(limiter.wait("a"), 1.0)
    limiter.spend("a")  # an empty bucket stays empty, never negative
    now[0] += 0.5
    assert math.isclose(limiter.wait("a"), 0.5)
    for who in "bcdefgh":  # memory stays bounded whatever the number of addresses
        limiter.spend(who)
        assert len(limiter._buckets) <= 4
    assert limiter.wait("h") == 0 and limiter._buckets["h"][0] == 59
