"""What the routes' errors look like in the OpenAPI document: every route declares `responses=ERRORS`, the
`{"error": {"code", "message"}}` body (service/schemas/common.py's ErrorResponse) under each status it may answer."""

from __future__ import annotations

from service.schemas.common import ErrorResponse

ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 422, 503)}
