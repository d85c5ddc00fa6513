"""The query log, feedback on answers and candidates to label (golden sets: golden.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.schemas.common import Number


class FeedbackOut(BaseModel):
    id: int
    query_id: str
    created_at: float
    rating: int = Field(description="1 = thumbs up, -1 = thumbs down.")
    comment: str | None
    correct_doc_id: str | None
    previous_rating: int | None = Field(
        None, description="The rating this key's earlier vote on the query had (it replaced it); null: none."
    )


class Thumbs(BaseModel):
    up: int
    down: int
    correct_doc_id: str | None = Field(None, description="A document its feedback named as the right one.")


class LoggedQuery(BaseModel):
    """A logged query as listed: the question, its answer's outcome and the signals it was scored on."""

    id: str
    created_at: float
    collection: str
    route: str = Field(description="query, stream or chat.")
    question: str
    answer: str | None
    generator: str | None
    declined: bool
    generation_error: str | None
    top_score: float | None
    retriever_agreement: float | None
    faithfulness: float | None
    unsupported_claims: int | None
    labelled_case: str | None
    labelled_case_id: str | None = Field(
        None,
        description="The golden case that labels it: the one made from it, while it exists, or one asking the same "
        "question. Label it again only to replace that case.",
    )
    redacted: bool


class QueryListed(LoggedQuery):
    feedback: Thumbs


class QueryPage(BaseModel):
    enabled: bool = Field(description="False when the query log is off (RAG_QUERY_LOG=false): nothing listed.")
    total: int
    items: list[QueryListed]


class Candidate(LoggedQuery):
    score: Number
    signals: dict[str, Number] = Field(description="What it scored for: thumbs_down, declined, low_top_score, ...")
    feedback: Thumbs
    correct_doc_id: str | None
    times_asked: int


class QueryRecordOut(LoggedQuery):
    """One logged query in full: settings, the contexts with their stage ranks, citations, timings, claims and
    its feedback; any column the log gains is shown too."""

    model_config = ConfigDict(extra="allow")

    settings: dict[str, Any]
    contexts: list[Any]
    stage_tops: dict[str, Any]
    citations: list[Any]
    timings: dict[str, Any]
    claims: list[Any] | None
    feedback: list[FeedbackOut]
