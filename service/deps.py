"""FastAPI dependencies shared by the routes (the service state, the caller's access, the job owner) and the
access helpers built on them (which jobs a key may see)."""

from __future__ import annotations

from typing import Annotated, Callable

from fastapi import Depends, Header, Request

from core.errors import ConfigError, InvalidRequestError
from service.auth import Access, presented_key
from service.guard import ACCESS, GUARDED_PREFIX
from service.jobs.context import owner_of
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


def get_owner(request: Request, state: StateDep) -> str:
    """Who the caller is, for job ownership and fairness: a hash of the API key ("open" with no keys)."""
    if not state.settings.api_keys:
        return "open"
    return owner_of(presented_key(request.headers.get("authorization"), request.headers.get("x-api-key")))


OwnerDep = Annotated[str, Depends(get_owner)]


def scope(access: Access) -> list[str] | None:
    """The collections a key may read, for a query's WHERE (None = every one)."""
    return None if access.collections is None or "*" in access.collections else list(access.collections)


def job_visible(job: dict, access: Access) -> bool:
    """The key may read the job's collection and, for an experiment, every collection its variants run on
    (from its request while it is queued or running: service/jobs/manager.py `collections_of`)."""
    return all(access.allows(c) for c in {job["collection"], *job.get("collections", [])})


def visible_job(state: ServiceState, access: Access, job_id: str, kind: str, visible: Callable[[dict], bool]) -> dict:
    """The job of this kind if `visible(job)` says the key may see it, without its files; else 404
    `<kind>_not_found` (the same answer as for no such job, so ids of others' jobs are not confirmed)."""
    job = state.jobs.get(job_id, kind=kind)
    if job is None or not visible(job):
        raise InvalidRequestError(f"{kind}_not_found", f"no {kind} {job_id[:64]!r}", 404)
    return {k: v for k, v in job.items() if k != "files"}
