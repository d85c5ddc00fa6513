"""The OpenAI-compatible face: the model list and a (non-streamed) chat completion, with this service's extras
(citations, the rewrite, the query id)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from engine.answer import Citation
from service.schemas.query import RewriteOut, TokenUsage


class ModelCard(BaseModel):
    id: str = Field(examples=["rag", "rag/docs"])
    object: str
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: str
    data: list[ModelCard]


class ChatMessageOut(BaseModel):
    role: str
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    finish_reason: str = Field(description="stop, or error when generation failed.")


class Usage(TokenUsage):
    """OpenAI's usage object; the counts are null when unknown (never 0), `source` and `tokenizer` say who
    counted (engine/generation/usage.py)."""


class ChatCompletion(BaseModel):
    id: str
    object: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    citations: list[Citation]
    generation_error: dict[str, Any] | None
    rewrite: RewriteOut | None
    query_id: str | None = Field(description="Rate the answer with POST /v1/feedback; null when logging is off.")
