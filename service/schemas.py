"""Request and response bodies of the REST API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from core.settings import COLLECTION_NAME_PATTERN
from engine.answer import Citation

# One collection-name type, validated the same way on every route and in every body.
CollectionName = Annotated[str, Field(pattern=COLLECTION_NAME_PATTERN, description="1-64 of A-Z a-z 0-9 - _")]
CollectionPath = Annotated[str, Path(pattern=COLLECTION_NAME_PATTERN, description="1-64 of A-Z a-z 0-9 - _")]


class ErrorBody(BaseModel):
    code: str = Field(examples=["collection_not_found"])
    message: str = Field(examples=["no collection named 'nope'"])


class ErrorResponse(BaseModel):
    error: ErrorBody


class FusionSettings(BaseModel):
    method: Literal["rrf", "dbsf"] | None = Field(None, description="Default from the settings (RAG_FUSION).")
    rrf_k: int | None = Field(None, ge=1, le=1000, description="RRF k: a point scores sum of 1/(k + rank - 1).")
    weights: tuple[float, float] | None = Field(None, description="RRF weights (sparse, dense).")


class QueryRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"question": "How are documents chunked?", "collection": "docs", "top_k": 5, "mode": "hybrid"}]
        }
    )

    question: str = Field(description="The question, in plain words.")
    collection: CollectionName | None = Field(None, description="Defaults to the service's collection.")
    top_k: int | None = Field(None, ge=1, le=300, description="Contexts (chunks) returned; default RAG_TOP_K.")
    candidates: int | None = Field(None, ge=1, le=1000, description="Candidates per retriever before fusion.")
    filters: dict[str, str | int | bool | list[str] | list[int]] | None = Field(
        None, description='Payload field -> value or list of accepted values, e.g. {"doc_type": "pdf"}.'
    )
    mode: Literal["hybrid", "dense", "sparse"] | None = None
    fusion: FusionSettings | None = None
    rerank: bool | None = Field(None, description="Default from the settings (RAG_RERANK).")
    generate: bool = True
    stream: bool = False


class StageOut(BaseModel):
    rank: int
    score: float


class ContextOut(BaseModel):
    rank: int
    score: float
    chunk_id: str
    doc_id: str
    title: str
    source: str
    start: int
    end: int
    heading_path: list[str]
    page: int | None
    text: str
    stages: dict[str, StageOut] = Field(description="Rank and score in each stage: sparse, dense, fused, rerank.")


class GenerationOut(BaseModel):
    generator: str
    answer: str | None
    citations: list[Citation]
    invalid_citations: list[int] = Field(description="Source numbers the answer cited that were not given; removed.")
    declined: bool = Field(description="The generator said the sources do not contain the answer.")
    error: ErrorBody | None = Field(None, description="Set when generation failed; retrieval results still come.")


class QueryResponse(BaseModel):
    question: str
    collection: str
    answer: str | None
    citations: list[Citation]
    generation: GenerationOut | None
    contexts: list[ContextOut]
    timings_ms: dict[str, float]
    manifest: dict[str, Any]


class JobOut(BaseModel):
    id: str
    collection: str
    status: Literal["queued", "running", "succeeded", "failed", "interrupted"]
    created_at: float
    finished_at: float | None = None
    files: list[str]
    progress: dict[str, int]
    report: dict | None = None
    error: str | None = None


class DocumentOut(BaseModel):
    doc_id: str
    source: str | None
    chunks: int
