"""FastAPI dependencies: the service state and the caller's access."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Header, Request

from service.auth import Access, authenticate
from service.state import ServiceState


def get_state(request: Request) -> ServiceState:
    return request.app.state.rag


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_access(
    request: Request,
    state: StateDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Access:
    """Who is calling and what they may touch; raises Unauthorized, or RateLimited past the key's rate."""
    presented = x_api_key
    if presented is None and authorization and authorization.lower().startswith("bearer "):
        presented = authorization[7:].strip()
    access = authenticate(state.settings.api_keys, presented)
    if state.limiter is not None:
        # Keyed by the key itself when there are keys (it has been checked), else by the client address.
        if state.settings.api_keys:
            who = "key:" + hashlib.sha256((presented or "").encode()).hexdigest()[:16]  # the key itself is not kept
        else:
            who = f"ip:{request.client.host if request.client else '?'}"
        state.limiter.check(who)
    return access


AccessDep = Annotated[Access, Depends(get_access)]
