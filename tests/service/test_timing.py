"""The innermost middleware (service/timing.py) over real HTTP: per-route latency and outcomes, and an
unhandled error answered as a 500 JSON body on a connection that stays usable."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import httpx
import uvicorn
from fastapi import FastAPI

from service.metrics import Metrics
from service.timing import Timing
from tests.helpers.serving import free_port


def test_timing_counts_routes_and_turns_an_unhandled_error_into_json():
    app = FastAPI()
    app.state.rag = SimpleNamespace(metrics=Metrics())

    @app.get("/ok/{n}")
    def ok(n: int):
        return {"n": n}

    @app.get("/boom")
    def boom():
        raise RuntimeError("a bug, with /srv/secret/path in its message")

    app.add_middleware(Timing)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.get("/ok/1").json() == {"n": 1}
            r = http.get("/boom")
            assert r.status_code == 500
            assert r.json() == {
                "error": {"code": "internal_error", "message": "internal error; the service log has the details"}
            }
            assert http.get("/ok/2").json() == {"n": 2}  # the same keep-alive connection still serves
            assert http.get("/missing").status_code == 404
        metrics = app.state.rag.metrics
        seen = {
            (s.labels.get("route"), s.labels.get("outcome")): s.value
            for m in metrics.outcomes.collect()
            for s in m.samples
            if s.name.endswith("_total")
        }
        assert seen[("/ok/{n}", "ok")] == 2 and seen[("/boom", "internal_error")] == 1
        counts = {
            s.labels["route"]: s.value
            for m in metrics.requests.collect()
            for s in m.samples
            if s.name.endswith("_count")
        }
        assert counts == {"/ok/{n}": 2}  # by route template, not by path; the failed request is not timed as ok
    finally:
        server.should_exit = True
        thread.join(10)
