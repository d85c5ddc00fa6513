"""The FastAPI application: heavy objects built once in the lifespan; one handler per error family."""

from __future__ import annotations

import logging
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import __version__
from core.errors import RagError
from core.settings import Settings
from service.guard import Guard, error_response
from service.jobs.context import scrub
from service.routes import audits, chat, documents, experiments, feedback, golden, query, ui
from service.schemas.common import Health
from service.state import ServiceState
from service.text import TextGuard
from service.timing import Timing

log = logging.getLogger("rag.service")


TMP = Path(tempfile.gettempdir())
_error = error_response  # {"error": {"code", "message"}}, rendered even with a lone surrogate in it


def create_app(settings: Settings | None = None, state: ServiceState | None = None) -> FastAPI:
    """The app. Give `state` to build it before serving (so start-up errors reach the caller), else the
    lifespan builds it."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state_ = state or ServiceState.build(settings)
        app.state.rag = state_
        state_.ready = True
        try:
            yield
        finally:
            state_.ready = False
            state_.close()

    # /docs (Swagger UI) and /redoc from assets shipped in the fastapi-offline package: no CDN.
    app = FastAPIOffline(
        title="rag-why",
        version=__version__,
        description="Hybrid retrieval over Qdrant, answers with numbered citations, and the evidence to audit them.",
        lifespan=lifespan,
    )
    app.include_router(query.router)
    app.include_router(chat.router)
    app.include_router(documents.router)
    app.include_router(audits.router)
    app.include_router(experiments.router)
    app.include_router(feedback.router)
    app.include_router(golden.router)
    app.include_router(ui.router)

    @app.exception_handler(RagError)
    async def rag_error(request: Request, exc: RagError):
        _count(request, exc.code)
        details = getattr(exc, "details", None)
        extra = {"details": details} if details else {}
        # No server path in any error (a golden set's temporary file, the data dir): below a known root the
        # path relative to it, any other absolute path its last part.
        message = scrub(str(exc), [settings.data_dir.absolute(), settings.data_dir.resolve(), TMP])
        return _error(exc.http_status, exc.code, message, headers=getattr(exc, "headers", None), **extra)

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError):
        # The job and query-log database is unreachable (restarting, a network cut): a 503 to retry, not a 500.
        # The pool is pre-pinged, so the first request after it is back gets a fresh connection.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc.orig).__name__)
        _count(request, "database_unavailable")
        message = "the service's database is not answering; try again in a few seconds"
        return _error(503, "database_unavailable", message, headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        _count(request, "invalid_request")
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(x) for x in first["loc"])
        return _error(422, "invalid_request", f"{where}: {first['msg']}", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not read the body
            _count(request, "invalid_body")
            return _error(400, "invalid_body", "the request body could not be read as sent")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    # Innermost of the middlewares: latency and outcome per route; an unhandled error becomes a 500 JSON body.
    app.add_middleware(Timing)

    # NUL and lone surrogates in query parameters and JSON bodies: 400 invalid_text before any route runs.
    app.add_middleware(TextGuard)
    # Outside everything else: API key, rate limits and body size are decided before any body byte is read.
    app.add_middleware(Guard, settings=settings)

    def _count(request: Request, outcome: str) -> None:
        state = getattr(request.app.state, "rag", None)
        route = request.scope.get("route")
        if state is not None:
            state.metrics.outcomes.labels(route.path if route else "unmatched", outcome).inc()

    @app.get("/healthz", tags=["ops"], response_model=Health)
    def healthz() -> dict:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], response_model=Health)
    def readyz(request: Request):
        """Models loaded and the store answering."""
        state: ServiceState | None = getattr(request.app.state, "rag", None)
        try:
            ok = bool(state and state.ready and state.store.list_collections() is not None)
        except Exception as exc:  # the store is down: not ready, and say why, with no server path in it
            log.warning("not ready: store not answering: %s", exc)  # the log keeps the paths
            data_dir = settings.data_dir
            message = scrub(str(exc), [data_dir.absolute(), data_dir.resolve()])
            return _error(503, "not_ready", f"store not answering: {message}")
        return {"status": "ready"} if ok else _error(503, "not_ready", "starting up")

    @app.get("/metrics", tags=["ops"])
    def metrics(request: Request):
        return Response(generate_latest(request.app.state.rag.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
