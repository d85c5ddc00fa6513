"""`POST /v1/query`: the question, and the answer with its citations, contexts, stage ranks and timings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from engine.answer import Citation
from service.schemas.common import CollectionName, ErrorBody


class FusionSettings(BaseModel):
    method: Literal["rrf", "dbsf"] | None = Field(None, description="Default from the settings (RAG_FUSION).")
    rrf_k: StrictInt | None = Field(None, ge=1, le=1000, description="RRF k: a point scores sum of 1/(k + rank - 1).")
    weights: tuple[StrictFloat, StrictFloat] | None = Field(None, description="RRF weights (sparse, dense).")


class HistoryTurn(BaseModel):
    """One earlier turn of the conversation (the question itself stays in `question`)."""

    role: Literal["user", "assistant", "system"]
    content: StrictStr = Field(max_length=20_000)


class QueryRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"question": "How are documents chunked?", "collection": "docs", "top_k": 5, "mode": "hybrid"}]
        }
    )

    question: str = Field(description="The question, in plain words.")
    collection: CollectionName | None = Field(None, description="Defaults to the service's collection.")
    top_k: StrictInt | None = Field(None, ge=1, le=300, description="Contexts (chunks) returned; default RAG_TOP_K.")
    candidates: StrictInt | None = Field(None, ge=1, le=1000, description="Candidates per retriever before fusion.")
    filters: dict[str, str | int | bool | list[str] | list[int]] | None = Field(
        None, description='Payload field -> value or list of accepted values, e.g. {"doc_type": "pdf"}.'
    )
    mode: Literal["hybrid", "dense", "sparse"] | None = None
    fusion: FusionSettings | None = None
    rerank: StrictBool | None = Field(None, description="Default from the settings (RAG_RERANK).")
    generate: StrictBool = True
    stream: StrictBool = False
    history: list[HistoryTurn] | None = Field(
        None,
        max_length=200,
        description="The conversation before the question, oldest first: [{role, content}]. A question that "
        "does not stand alone is rewritten from it before retrieval (see `rewrite` in the response).",
    )
    rewrite: StrictBool | None = Field(
        None, description="Rewrite the question from the history; default: on unless RAG_REWRITE=off."
    )


class RewriteOut(BaseModel):
    question: str = Field(description="The question as asked (the last user turn).")
    query: str = Field(description="What retrieval searched (and the generator answered).")
    method: str = Field(description="off, none (no history), offline or llm.")
    standalone: bool = Field(description="The question was searched as it is.")
    history_turns: int
    reason: str
    fallback: ErrorBody | None = Field(None, description="The LLM rewrite failed; the offline one answered.")
    signals: dict[str, Any]
    ms: float


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


class TokenUsage(BaseModel):
    """Tokens of one answer (engine/generation/usage.py). Null counts are unknown, never 0: the LLM endpoint
    returned no usage, or the generator cannot count."""

    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    source: str = Field(
        description="llm_server: the endpoint's own usage (its model's tokenizer); embedding_tokenizer: the "
        "extractive generator, counted with the embedding model's tokenizer over the question and contexts "
        "(prompt) and the answer (completion); none: no generator ran (0 is exact); unknown: not counted."
    )
    tokenizer: str | None = Field(None, description="The model whose tokenizer counted, when known.")


class GenerationOut(BaseModel):
    generator: str
    answer: str | None
    citations: list[Citation]
    invalid_citations: list[int] = Field(description="Source numbers the answer cited that were not given; removed.")
    declined: bool = Field(description="The generator said the sources do not contain the answer.")
    error: ErrorBody | None = Field(None, description="Set when generation failed; retrieval results still come.")
    usage: TokenUsage | None = Field(None, description="Token counts of this answer, and who counted them.")


class QueryResponse(BaseModel):
    question: str
    collection: str
    answer: str | None
    citations: list[Citation]
    generation: GenerationOut | None
    contexts: list[ContextOut]
    timings_ms: dict[str, float]
    manifest: dict[str, Any]
    rewrite: RewriteOut | None = Field(None, description="The rewrite stage, when the question came with history.")
    query_id: str | None = Field(
        None, description="This query in the query log (rate it with POST /v1/feedback); null when logging is off."
    )
