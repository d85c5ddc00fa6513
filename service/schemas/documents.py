"""Collections and their documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class CollectionOut(BaseModel):
    name: str
    points: int = Field(description="Chunks stored.")
    spec: dict[str, Any] = Field(description="What built it: embedding model, chunker, sparse encoder.")


class DocumentOut(BaseModel):
    doc_id: str
    source: str | None
    chunks: int


class DocumentDeleted(BaseModel):
    doc_id: str
    chunks_deleted: int
