"""FastAPI dependencies: the service state and the caller's access."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from service.auth import Access, authenticate
from service.state import ServiceState


def get_state(request: Request) -> ServiceState:
    return request.app.state.rag


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_access(
    state: StateDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Access:
    presented = x_api_key
    if presented is None and authorization and authorization.lower().startswith("bearer "):
        presented = authorization[7:].strip()
    return authenticate(state.settings.api_keys, presented)


AccessDep = Annotated[Access, Depends(get_access)]
