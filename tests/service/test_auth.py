"""API keys scoped per collection: 401 without a key, 403 outside its scope, on every route."""

from __future__ import annotations

import pytest

from tests.helpers.service import LiveServer

KEYS = {"docs-key": ["docs"], "sci-key": ["scifact"], "admin-key": ["*"]}


@pytest.fixture(scope="module")
def secured(base_settings):
    server = LiveServer(base_settings.model_copy(update={"api_keys": KEYS}))
    yield server
    server.stop()


def test_no_key_is_401(secured):
    r = secured.http.post("/v1/query", json={"question": "hi"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert secured.http.get("/healthz").status_code == 200  # probes stay open


def test_wrong_key_is_401(secured):
    r = secured.http.post("/v1/query", json={"question": "hi"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


def test_scoped_keys(secured):
    docs = {"X-API-Key": "docs-key"}
    assert (
        secured.http.post("/v1/query", json={"question": "chunking", "generate": False}, headers=docs).status_code
        == 200
    )
    r = secured.http.post("/v1/query", json={"question": "x", "collection": "scifact"}, headers=docs)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    # Neither list, read nor delete another collection's documents.
    assert secured.http.get("/v1/collections/scifact/documents", headers=docs).status_code == 403
    assert secured.http.delete("/v1/collections/scifact/documents/4983", headers=docs).status_code == 403
    assert (
        secured.http.post(
            "/v1/collections/scifact/documents", headers=docs, files=[("files", ("a.txt", b"text", "text/plain"))]
        ).status_code
        == 403
    )
    listed = {c["name"] for c in secured.http.get("/v1/collections", headers=docs).json()}
    assert listed == {"docs"}
    admin = {"Authorization": "Bearer admin-key"}
    assert {"docs", "scifact"} <= {c["name"] for c in secured.http.get("/v1/collections", headers=admin).json()}


def test_chat_facade_needs_a_key(secured):
    r = secured.http.post(
        "/v1/chat/completions",
        json={"model": "rag/scifact", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": "Bearer docs-key"},
    )
    assert r.status_code == 403


def test_rate_limit_per_key(base_settings):
    server = LiveServer(base_settings.model_copy(update={"api_keys": KEYS, "rate_limit_per_minute": 3}))
    try:
        docs = {"X-API-Key": "docs-key"}
        codes = [server.http.get("/v1/collections", headers=docs).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = server.http.get("/v1/collections", headers=docs)
        assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
        # Another key has its own bucket.
        assert server.http.get("/v1/collections", headers={"X-API-Key": "sci-key"}).status_code == 200
    finally:
        server.stop()


def test_token_bucket_refills():
    from service.ratelimit import RateLimited, RateLimiter

    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])  # one token a second, bursts of 60
    for _ in range(60):
        limiter.check("a")
    with pytest.raises(RateLimited):
        limiter.check("a")
    now[0] += 1.0
    limiter.check("a")
    limiter.check("b")
