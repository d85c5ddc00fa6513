"""An OpenAI-compatible `POST /v1/chat/completions`: apps using the `openai` client get grounded answers.

The last user message is the question; the messages before it are its history, from which the rewrite stage
(engine/rewrite.py) makes a question that does not stand alone searchable. `model` picks the collection:
"rag" for the default one, or "rag/<collection>". The answer carries `[n]` citations; the response adds a
`citations` list (kept by the openai client in `model_extra`) and the `rewrite`, and streaming ends with a
chunk carrying them before `[DONE]`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict
from typing import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from core.errors import InvalidRequestError
from core.settings import COLLECTION_NAME_PATTERN
from engine.generation.usage import Usage
from engine.rewrite import ROLES, Turn
from service.deps import AccessDep, StateDep
from service.errors import ERRORS
from service.querying import history_from, record, rewrite_log, started, validate_question
from service.querylog.capture import log_query, new_query_id
from service.schemas.chat import ChatCompletion, ModelList

router = APIRouter(tags=["openai-compatible"])


class ContentPart(BaseModel):
    """One part of a message's content: `{"type": "text", "text": ...}` is read; other types are ignored."""

    model_config = ConfigDict(extra="allow")
    type: StrictStr = Field(max_length=64)
    text: StrictStr | None = None

    @model_validator(mode="after")
    def _text_part_has_text(self) -> "ContentPart":
        if self.type == "text" and self.text is None:
            raise ValueError("a text part has a 'text' string")
        return self


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: StrictStr = Field(max_length=64)
    content: StrictStr | list[ContentPart] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"model": "rag/docs", "messages": [{"role": "user", "content": "How are documents chunked?"}]}]
        },
    )
    model: StrictStr = Field("rag", max_length=200)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    top_k: StrictInt = Field(5, ge=1, le=50)


def collection_of(state, model: str) -> str:
    """`rag` is the default collection, `rag/<name>` a named one; anything else is refused, never defaulted."""
    if model == "rag":
        return state.settings.collection
    name = model[4:] if model.startswith("rag/") else None
    if name is None or not re.fullmatch(COLLECTION_NAME_PATTERN, name):
        raise InvalidRequestError("invalid_model", f"model is 'rag' or 'rag/<collection>', not {model[:80]!r}")
    return name


def _text(content: str | list[ContentPart] | None) -> str:
    if isinstance(content, list):
        return " ".join(p.text or "" for p in content if p.type == "text")
    return content or ""


def usage_of(gen) -> dict:
    """OpenAI's `usage` of the answer: counted by the model that answered where known, null where not (never a
    made-up 0); `source` and `tokenizer` say who counted (engine/generation/usage.py)."""
    usage = gen.usage if gen is not None and gen.usage is not None else Usage.unknown()
    return asdict(usage)


@router.get("/v1/models", response_model=ModelList, responses=ERRORS)
def list_models(state: StateDep, access: AccessDep) -> dict:
    """OpenAI's model list, which chat front-ends ask for first: `rag` (the default collection) and
    `rag/<collection>` for each collection this key may read."""
    names = ["rag"] if access.allows(state.settings.collection) else []
    names += [f"rag/{c}" for c in sorted(state.store.list_collections()) if access.allows(c)]
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": 0, "owned_by": "rag-why"} for n in names],
    }


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERRORS)
def chat_completions(req: ChatRequest, state: StateDep, access: AccessDep):
    users = [m for m in req.messages if m.role == "user"]
    if not users:
        raise InvalidRequestError("empty_question", "no user message to answer")
    collection = collection_of(state, req.model)
    access.check(collection)
    state.engine.require_collection(collection)
    question = validate_question(state, _text(users[-1].content))
    # The conversation before the last user message (its most recent turns): the rewrite stage reads it.
    last = max(i for i, m in enumerate(req.messages) if m.role == "user")
    history = [Turn(m.role, _text(m.content)) for m in req.messages[:last] if m.role in ROLES]
    history = history_from(state, history[-state.settings.max_history_turns :])
    params = state.engine.params(top_k=req.top_k)
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    query_id = new_query_id(state)  # rate the answer with POST /v1/feedback

    def citations(result) -> list[dict]:
        return [asdict(c) for c in result.generation.citations] if result.generation else []

    if not req.stream:
        result = state.answerer.ask(collection, question, params, history=history)
        record(state, result)
        log_query(state, query_id, result, params, "chat", **rewrite_log(result))
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
            "usage": usage_of(gen),
            "citations": citations(result),
            "generation_error": gen.error if gen else None,
            "rewrite": asdict(result.rewrite) if result.rewrite else None,
            "query_id": query_id,
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
        for kind, payload in state.answerer.stream(collection, question, params, history):
            if kind == "retrieval":  # the first event: retrieval ran before the response started
                yield chunk({"role": "assistant", "content": ""})
            elif kind == "token":
                yield chunk({"content": payload})
            elif kind == "final":
                record(state, payload)
                log_query(state, query_id, payload, params, "chat", **rewrite_log(payload))
                gen = payload.generation
                yield chunk(
                    {},
                    "stop" if gen and not gen.error else "error",
                    citations=citations(payload),
                    generation_error=gen.error if gen else None,
                    rewrite=asdict(payload.rewrite) if payload.rewrite else None,
                    query_id=query_id,
                    usage=usage_of(gen),
                )
        yield "data: [DONE]\n\n"

    # As OpenAI's API does mid-stream: a data line with an error object, then [DONE].
    on_error = lambda error: f"data: {json.dumps({'error': error})}\n\ndata: [DONE]\n\n"  # noqa: E731
    return StreamingResponse(started(events(), on_error), media_type="text/event-stream")
