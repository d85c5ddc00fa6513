"""Text the service cannot keep: NUL (U+0000) and lone surrogates (`"\\ud800"` in JSON).

PostgreSQL refuses both (a NUL in a text column or a JSONB string, a surrogate in any UTF-8 text), SQLite and
files take a surrogate no better, and either one in a stored field used to surface as a 500. `TextGuard`, a
pure ASGI middleware inside the guard, refuses them before any route runs: 400 `invalid_text` naming the field,
for any query parameter of `/v1/...`, and for any string (or key) of a JSON body, except the bodies of
`/v1/query` and `/v1/chat/completions`, which check their own text (a question's NUL is dropped and the
question answered and logged; a lone surrogate there is `invalid_text` too, a filter's `invalid_parameters`).

A JSON body can only carry either one as an escape (`\\u0000`, `\\udXXX`; a raw control character or an
unpaired surrogate's bytes are not JSON), so the body is parsed here only when such an escape is in it.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

from service.guard import GUARDED_PREFIX, error_response

OWN_TEXT_CHECKS = ("/v1/query", "/v1/chat/completions")  # these routes check their own text (service/querying.py)
SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
BODY_METHODS = ("POST", "PUT", "PATCH")


def what_is_wrong(text: str) -> str | None:
    """Why this text cannot be kept, or None when it can."""
    if "\x00" in text:
        return "a NUL character (U+0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (not valid Unicode)"
    return None


def find_bad_text(value) -> tuple[str, str] | None:
    """(where, what) of the first string or key in a JSON value that cannot be kept; iterative, so any depth."""
    stack: list[tuple[object, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if (what := what_is_wrong(item)) is not None:
                return where or "body", what
        elif isinstance(item, dict):
            for k, v in item.items():
                path = f"{where}.{k}" if where else str(k)
                if (what := what_is_wrong(k)) is not None:
                    return (f"{where}: a key" if where else "a key"), what
                stack.append((v, path))
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


class InvalidText(Exception):
    def __init__(self, where: str, what: str):
        super().__init__(f"{where[:120]} holds {what}, which the service cannot store")


class TextGuard:
    """ASGI middleware; `create_app` installs it inside the guard (so bodies are already bounded in size)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(GUARDED_PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            self.check_query(scope)
        except InvalidText as exc:
            await self.refuse(scope, receive, send, exc)
            return
        if scope["method"] not in BODY_METHODS or scope["path"].rstrip("/") in OWN_TEXT_CHECKS or not self.json(scope):
            await self.app(scope, receive, send)
            return
        # Read the whole body (the guard has bounded it), check it, then hand the same messages to the app.
        messages, chunks = [], []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if messages[-1]["type"] == "http.request" and SUSPECT.search(body):
            try:
                bad = find_bad_text(json.loads(body))
            except (ValueError, RecursionError):  # not JSON: the route's parser answers that
                bad = None
            if bad is not None:
                await self.refuse(scope, receive, send, InvalidText(*bad))
                return
        replay = iter(messages)

        async def replayed():
            message = next(replay, None)
            return message if message is not None else await receive()

        await self.app(scope, replayed, send)

    @staticmethod
    def json(scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                return b"json" in value.lower()
        return True  # FastAPI reads a body without a content type as JSON too

    @staticmethod
    def check_query(scope) -> None:
        raw = scope.get("query_string", b"")
        if b"%00" not in raw and b"\x00" not in raw:
            return
        for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                raise InvalidText(f"query parameter {name.replace(chr(0), '')[:40]!r}", "a NUL character (U+0000)")

    @staticmethod
    async def refuse(scope, receive, send, exc: InvalidText) -> None:
        state = getattr(scope["app"].state, "rag", None) if "app" in scope else None
        if state is not None:
            state.metrics.outcomes.labels("unmatched", "invalid_text").inc()
        await error_response(400, "invalid_text", str(exc))(scope, receive, send)
