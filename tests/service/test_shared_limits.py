"""Rate limits shared through the real Redis (RAG_REDIS_URL) by two real `rag serve` processes, and
X-Forwarded-For counted only from a trusted proxy (issue 21).

p1 trusts no proxy (the default); p2 trusts 127.0.0.1 as its proxy. Both share one Redis: a key's rate limit
holds across both (not twice over), a failed-login bucket emptied through p1 refuses the right key on p2, and
a client forging X-Forwarded-For straight to p1 still spends its one address's bucket."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tests.helpers.serving import free_port, wait_until_up

REDIS_URL = os.environ.get("RAG_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
KEY, OTHER = "shared-limits-key", "shared-limits-other"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {type(exc).__name__}")
    for k in client.scan_iter("rag:ratelimit:*"):  # this test's own database and key space
        client.delete(k)
    procs, urls = [], []
    try:
        for i, trusted in enumerate([None, "127.0.0.1"]):
            port = free_port()
            env = {
                **os.environ,
                "RAG_DATA_DIR": str(tmp_path_factory.mktemp(f"p{i}") / "data"),
                "RAG_PORT": str(port),
                "RAG_REDIS_URL": REDIS_URL,
                "RAG_API_KEYS": f'{{"{KEY}": ["*"], "{OTHER}": ["*"]}}',
                "RAG_RATE_LIMIT_PER_MINUTE": "6",
                "RAG_AUTH_FAILURES_PER_MINUTE": "4",
            }
            env.pop("RAG_FORWARDED_ALLOW_IPS", None)
            if trusted:
                env["RAG_FORWARDED_ALLOW_IPS"] = trusted
            procs.append(subprocess.Popen([sys.executable, "-m", "cli", "serve"], env=env, stdout=subprocess.DEVNULL))
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs):
            wait_until_up(f"{url}/readyz", proc, "rag serve")
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
        client.close()


def get(url: str, key: str | None = None, forwarded: str | None = None) -> int:
    headers = {"X-API-Key": key} if key else {}
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    return httpx.get(f"{url}/v1/collections", headers=headers, timeout=30).status_code


def test_limits_hold_across_replicas_and_forged_addresses_do_not_help(replicas):
    p1, p2 = replicas
    # A key's rate limit (6 a minute) over both replicas: 6 answered, not 12.
    codes = [get((p1, p2)[i % 2], KEY) for i in range(12)]
    assert codes.count(200) == 6 and codes.count(429) == 6, codes

    # Failed logins straight to p1, each forging a new X-Forwarded-For: p1 trusts no proxy, so all are one
    # address's (127.0.0.1) and the 5th is refused.
    codes = [get(p1, "wrong", forwarded=f"198.51.100.{i}") for i in range(5)]
    assert codes == [401, 401, 401, 401, 429], codes
    assert get(p1, OTHER, forwarded="198.51.100.77") == 429  # the right key too, from that address
    # p2 never saw a failure, but the bucket is shared through Redis: the right key from 127.0.0.1 is refused.
    assert get(p2, OTHER) == 429
    # p2 trusts 127.0.0.1 as its proxy: the address the proxy forwards is the client's, with its own bucket.
    assert get(p2, "wrong", forwarded="203.0.113.7") == 401
    assert get(p2, OTHER, forwarded="203.0.113.8") == 200
