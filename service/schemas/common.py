"""What every resource shares: the collection-name type and the error body."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, Field

from core.settings import COLLECTION_NAME_PATTERN

# One collection-name type, validated the same way on every route and in every body.
CollectionName = Annotated[str, Field(pattern=COLLECTION_NAME_PATTERN, description="1-64 of A-Z a-z 0-9 - _")]
CollectionPath = Annotated[str, Path(pattern=COLLECTION_NAME_PATTERN, description="1-64 of A-Z a-z 0-9 - _")]


class ErrorBody(BaseModel):
    code: str = Field(examples=["collection_not_found"])
    message: str = Field(examples=["no collection named 'nope'"])


class ErrorResponse(BaseModel):
    error: ErrorBody


# A number as the route computed it: an int stays an int in the JSON (a plain `float` field would write 0 as 0.0).
Number = int | float


class Health(BaseModel):
    status: str = Field(examples=["ok", "ready"])
