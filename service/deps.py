"""FastAPI dependencies: the service state and the caller's access."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from core.errors import ConfigError
from service.auth import Access
from service.guard import ACCESS, GUARDED_PREFIX
from service.state import ServiceState


def get_state(request: Request) -> ServiceState:
    return request.app.state.rag


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_access(
    request: Request,
    # Declared for the OpenAPI document only: the guard (service/guard.py) has already checked the key and
    # the rate limits, before the body was read.
    authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None,
    x_api_key: Annotated[str | None, Header(description="The API key (instead of Authorization)")] = None,
) -> Access:
    """Who is calling and what they may touch, as the guard decided."""
    access = request.scope.get(ACCESS)
    if access is None:  # a route outside the guarded prefix asked for access: a bug, not a client error
        raise ConfigError(f"route {request.url.path!r} is outside {GUARDED_PREFIX} and cannot check API keys")
    return access


AccessDep = Annotated[Access, Depends(get_access)]
