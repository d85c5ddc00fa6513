"""Per-route latency and outcomes, and the last word on an unhandled error: a pure ASGI middleware.

It replaces a function middleware (`@app.middleware("http")`, Starlette's BaseHTTPMiddleware), which runs
every request through a task group and in-memory streams: on the 2-core box that was a measurable share of
a retrieval-only request's CPU (issue 18). Here the response messages pass straight through; the route is
read from the scope after the app has run (Starlette's router writes it there).
"""

from __future__ import annotations

import logging
import time

from service.guard import error_response

log = logging.getLogger("rag.service")


class Timing:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status: list[int] = []

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            # Caught here rather than by an exception handler, so the connection stays usable.
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            self._count(scope, "internal_error")
            if status:  # the response had begun: nothing sensible can follow it
                raise
            await error_response(500, "internal_error", "internal error; the service log has the details")(
                scope, receive, send
            )
            return
        route, state = scope.get("route"), getattr(scope["app"].state, "rag", None)
        if state is not None and route is not None:
            state.metrics.requests.labels(route.path, scope["method"]).observe((time.perf_counter() - t0) * 1000)
            if status and status[0] < 400:
                state.metrics.outcomes.labels(route.path, "ok").inc()

    @staticmethod
    def _count(scope, outcome: str) -> None:
        state, route = getattr(scope["app"].state, "rag", None), scope.get("route")
        if state is not None:
            state.metrics.outcomes.labels(route.path if route else "unmatched", outcome).inc()
