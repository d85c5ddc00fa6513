"""An OpenAI-compatible `POST /v1/chat/completions`: apps using the `openai` client get grounded answers.

The last user message is the question. `model` picks the collection: "rag" for the default one, or
"rag/<collection>". The answer carries `[n]` citations; the response adds a `citations` list (kept by the
openai client in `model_extra`), and streaming ends with a chunk carrying them before `[DONE]`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict
from typing import Any, Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from core.errors import InvalidRequestError
from core.settings import COLLECTION_NAME_PATTERN
from service.deps import AccessDep, StateDep
from service.routes.query import ERRORS, record, validate_question

router = APIRouter(tags=["openai-compatible"])


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"model": "rag/docs", "messages": [{"role": "user", "content": "How are documents chunked?"}]}]
        },
    )
    model: str = "rag"
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    top_k: int = Field(5, ge=1, le=50)


def collection_of(state, model: str) -> str:
    """`rag` is the default collection, `rag/<name>` a named one; anything else is refused, never defaulted."""
    if model == "rag":
        return state.settings.collection
    name = model[4:] if model.startswith("rag/") else None
    if name is None or not re.fullmatch(COLLECTION_NAME_PATTERN, name):
        raise InvalidRequestError("invalid_model", f"model is 'rag' or 'rag/<collection>', not {model[:80]!r}")
    return name


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
    return content or ""


@router.post("/v1/chat/completions", responses=ERRORS)
def chat_completions(req: ChatRequest, state: StateDep, access: AccessDep):
    users = [m for m in req.messages if m.role == "user"]
    if not users:
        raise InvalidRequestError("empty_question", "no user message to answer")
    collection = collection_of(state, req.model)
    access.check(collection)
    state.engine.require_collection(collection)
    question = validate_question(state, _text(users[-1].content))
    params = state.engine.params(top_k=req.top_k)
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def citations(result) -> list[dict]:
        return [asdict(c) for c in result.generation.citations] if result.generation else []

    if not req.stream:
        result = state.answerer.ask(collection, question, params)
        record(state, result)
        gen = result.generation
        content = gen.answer if gen and gen.answer is not None else f"Generation failed: {gen.error['message']}"
        return {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": req.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop" if gen and not gen.error else "error",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "citations": citations(result),
            "generation_error": gen.error if gen else None,
        }

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        body = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": req.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    def events() -> Iterator[str]:
        yield chunk({"role": "assistant", "content": ""})
        for kind, payload in state.answerer.stream(collection, question, params):
            if kind == "token":
                yield chunk({"content": payload})
            elif kind == "final":
                record(state, payload)
                gen = payload.generation
                yield chunk(
                    {},
                    "stop" if gen and not gen.error else "error",
                    citations=citations(payload),
                    generation_error=gen.error if gen else None,
                )
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
