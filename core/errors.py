"""The error family. Each error has a stable `code` and a message meant for people.

The API maps these to HTTP statuses in one place, the CLI to exit messages in another.
"""

from __future__ import annotations


class RagError(Exception):
    """Base class: `str(error)` is displayed to the user as it is."""

    code = "internal_error"
    http_status = 500


class ConfigError(RagError):
    code = "config_error"
    http_status = 500


class StoreLockedError(RagError):
    """`detail` says which store and who holds it, without advice: a command that knows what it was asked to do
    (`rag audit`) words the way round it itself."""

    code = "store_locked"
    http_status = 503

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.detail = detail or message


class Unauthorized(RagError):
    code = "unauthorized"
    http_status = 401


class Forbidden(RagError):
    code = "forbidden"
    http_status = 403


class CollectionNotFoundError(RagError):
    code = "collection_not_found"
    http_status = 404


class CollectionMismatchError(RagError):
    """The collection was built with other model, chunker or BM25 settings than the ones asked for."""

    code = "collection_mismatch"
    http_status = 409


class StoreError(RagError):
    code = "store_error"
    http_status = 502


class ParseError(RagError):
    """One file could not be turned into documents. The job goes on with the other files."""

    code = "parse_error"
    http_status = 422


class InvalidRequestError(RagError):
    """A request the service cannot take as it is; `code` names what is wrong."""

    http_status = 400

    def __init__(self, code: str, message: str, http_status: int = 400, details: list | None = None):
        super().__init__(message)
        self.code, self.http_status = code, http_status
        self.details = details  # structured items a client can act on (e.g. each label problem and its closest text)
