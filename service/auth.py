"""API keys scoped to collections. No keys configured = open. Keys are compared in constant time."""

from __future__ import annotations

import hmac

from core.errors import Forbidden, Unauthorized


class Access:
    """What one request may touch."""

    def __init__(self, collections: list[str] | None):
        self.collections = collections  # None = everything

    def check(self, collection: str) -> None:
        if self.collections is not None and "*" not in self.collections and collection not in self.collections:
            raise Forbidden(f"this API key has no access to collection {collection!r}")

    def allows(self, collection: str) -> bool:
        return self.collections is None or "*" in self.collections or collection in self.collections


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request presents: `X-API-Key: <key>`, else `Authorization: Bearer <key>`."""
    if x_api_key is not None:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def authenticate(keys: dict[str, list[str]] | None, presented: str | None) -> Access:
    if not keys:
        return Access(None)
    if not presented:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    match = None
    for key, scope in keys.items():  # compare against every key, so timing says nothing about which matched
        if hmac.compare_digest(key.encode(), presented.encode()):
            match = scope
    if match is None:
        raise Unauthorized("unknown API key")
    return Access(list(match))
