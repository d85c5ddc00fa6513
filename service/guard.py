"""The gate in front of every route: API key, rate limits and body size, decided before any body byte is read.

Pure ASGI (no route, dependency or parser runs first), so a 400 MB body without a valid key gets its 401 from
the headers alone, a declared size over the limit its 413 before the body is sent (a client that sends
`Expect: 100-continue` never sends it), and a chunked body is cut off with a 413 at the limit.

- `/v1/...` needs a key when keys are configured. Failed authentications are rate-limited per client address
  (a token bucket; an empty bucket refuses every key from that address, the right one too, so guessing gets
  no answer); the per-key limit (`rate_limit_per_minute`) is taken here too.
- Bodies: uploads to `POST /v1/collections/{name}/documents` may carry `max_upload_mb` x `max_upload_files`,
  at most `max_upload_request_mb`, plus the multipart framing (413 `upload_too_large`; the route checks each
  file as it streams); audits and audit reports (`POST /v1/audits`, `/v1/ui/audit-view`: golden sets, corpus
  ids) `max_audit_body_mb`; every other body `max_body_mb` (413 `body_too_large`).
- The client address is the socket peer, or the forwarded one when uvicorn trusts the proxy
  (`RAG_FORWARDED_ALLOW_IPS`, none by default; see guides/hostile-clients.md).
- Both limits are per process, or shared by every replica through Redis (`RAG_REDIS_URL`; service/ratelimit.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from core.errors import InvalidRequestError, RagError, Unauthorized
from core.settings import Settings
from service.auth import Access, authenticate, presented_key
from service.ratelimit import RateLimited, make_limiter

ACCESS = "rag.access"  # scope key: the caller's Access, read by service/deps.py
GUARDED_PREFIX = "/v1/"
UPLOAD_PATH = re.compile(r"^/v1/collections/[^/]+/documents/?$")
AUDIT_PATHS = (
    "/v1/audits",
    "/v1/audits/",
    "/v1/experiments",
    "/v1/experiments/",
)
AUDIT_VIEW_PATHS = ("/v1/ui/audit-view", "/v1/ui/audit-view/")  # a report and its baseline: max_audit_view_mb
MULTIPART_SLACK = 64 * 1024  # boundaries, and per file below: part headers with a long file name
MULTIPART_SLACK_PER_FILE = 2 * 1024


class ErrorJSON(JSONResponse):
    """JSON that always renders: a lone surrogate echoed from a request (a dict key in an error location,
    say) becomes '?' instead of failing the response."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            "utf-8", "replace"
        )


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    return ErrorJSON({"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers)


class BodyTooLarge(InvalidRequestError):
    def __init__(self, limit: int, upload: bool):
        if upload:
            super().__init__("upload_too_large", f"the upload is over the {limit:,} byte limit of one request", 413)
        else:
            super().__init__("body_too_large", f"the request body is over the {limit:,} byte limit", 413)


class Guard:
    """ASGI middleware; `create_app` installs it outside everything else."""

    def __init__(self, app, settings: Settings):
        self.app = app
        self.settings = settings
        # Per client address; shared by the replicas through Redis when RAG_REDIS_URL is set.
        self.failures = make_limiter(settings, "auth", settings.auth_failures_per_minute)
        self.body_limit = int(settings.max_body_mb * 1e6)
        self.audit_limit = int(max(settings.max_audit_body_mb, settings.max_body_mb) * 1e6)
        files = settings.max_upload_mb * settings.max_upload_files
        self.upload_limit = int(
            min(files, settings.max_upload_request_mb) * 1e6
            + MULTIPART_SLACK
            + MULTIPART_SLACK_PER_FILE * settings.max_upload_files
        )

    def limit_for(self, scope) -> tuple[int, bool]:
        """The byte limit of this request's body, and whether it is an upload."""
        if scope["method"] == "POST" and UPLOAD_PATH.match(scope["path"]):
            return self.upload_limit, True
        if scope["method"] == "POST" and scope["path"] in AUDIT_PATHS:
            return self.audit_limit, False
        if scope["method"] == "POST" and scope["path"] in AUDIT_VIEW_PATHS:
            return int(self.settings.max_audit_view_mb * 1e6), False
        return self.body_limit, False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, upload = self.limit_for(scope)
        try:
            headers = Headers(scope=scope)
            if scope["path"].startswith(GUARDED_PREFIX):
                scope[ACCESS] = self.authorize(scope, headers)
            declared = headers.get("content-length")
            if declared is not None:
                if not declared.strip().isdigit():
                    raise InvalidRequestError("invalid_content_length", "Content-Length is not a number")
                if int(declared) > limit:
                    raise BodyTooLarge(limit, upload)
        except RagError as exc:
            self.count(scope, exc.code)
            await error_response(exc.http_status, exc.code, str(exc), getattr(exc, "headers", None))(
                scope, receive, send
            )
            return

        received, refused, started, answered = 0, False, False, False

        async def guarded_receive():
            # Counts what arrives, whatever the framing: a chunked body has no Content-Length to check.
            nonlocal received, refused, answered
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True  # the app is told the client left, and stops reading
                    exc = BodyTooLarge(limit, upload)
                    self.count(scope, exc.code)
                    if not started:
                        await error_response(exc.http_status, exc.code, str(exc))(scope, receive, send)
                        answered = True  # the app's own answer (to a "disconnect") is dropped
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message) -> None:
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, guarded_receive, guarded_send)

    def authorize(self, scope, headers: Headers) -> Access:
        """Who is calling; raises Unauthorized, or RateLimited (failed authentications per address, or the
        key's own rate)."""
        state = getattr(scope["app"].state, "rag", None) if "app" in scope else None
        settings = state.settings if state is not None else self.settings
        client = f"ip:{scope['client'][0] if scope.get('client') else '?'}"
        presented = presented_key(headers.get("authorization"), headers.get("x-api-key"))
        if settings.api_keys and self.failures is not None:
            wait = self.failures.wait(client)
            if wait > 0:
                raise RateLimited(wait, "too many failed authentications from this address")
        try:
            access = authenticate(settings.api_keys, presented)
        except Unauthorized:
            if self.failures is not None:
                self.failures.spend(client)
            raise
        limiter = state.limiter if state is not None else None
        if limiter is not None:
            # Keyed by the key itself when there are keys (it has been checked), else by the client address.
            if settings.api_keys:
                who = "key:" + hashlib.sha256((presented or "").encode()).hexdigest()[:16]  # the key is not kept
            else:
                who = client
            limiter.check(who)
        return access

    @staticmethod
    def count(scope, outcome: str) -> None:
        state = getattr(scope["app"].state, "rag", None) if "app" in scope else None
        if state is not None:
            state.metrics.outcomes.labels("unmatched", outcome).inc()
