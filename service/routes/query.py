"""POST /v1/query: question -> answer with citations, contexts with per-stage ranks, timings, manifest."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from core.errors import InvalidRequestError
from engine.answer import AnswerResult
from engine.params import RetrievalParams
from service.deps import AccessDep, StateDep
from service.schemas import ErrorResponse, QueryRequest, QueryResponse
from service.state import ServiceState

router = APIRouter(tags=["query"])

ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 422, 503)}


def validate_question(state: ServiceState, question: str) -> str:
    q = question.strip()
    if not q:
        raise InvalidRequestError("empty_question", "the question is empty")
    if len(q) > state.settings.max_question_chars:
        raise InvalidRequestError(
            "question_too_long",
            f"the question has {len(q)} characters; the limit is {state.settings.max_question_chars}",
        )
    return q


def params_from(state: ServiceState, req: QueryRequest) -> RetrievalParams:
    f = req.fusion
    return state.engine.params(
        mode=req.mode,
        fusion=f.method if f else None,
        rrf_k=f.rrf_k if f else None,
        weights=f.weights if f else None,
        top_k=req.top_k,
        candidates=req.candidates,
        rerank=req.rerank,
        filters=req.filters,
    )


def to_response(state: ServiceState, result: AnswerResult, params: RetrievalParams) -> dict:
    gen = asdict(result.generation) if result.generation else None
    return {
        "question": result.question,
        "collection": result.collection,
        "answer": gen["answer"] if gen else None,
        "citations": gen["citations"] if gen else [],
        "generation": gen,
        "contexts": [asdict(c) for c in result.retrieval.contexts],
        "timings_ms": result.timings_ms,
        "manifest": state.engine.manifest(result.collection, params),
    }


def record(state: ServiceState, result: AnswerResult) -> None:
    for stage, ms in result.timings_ms.items():
        state.metrics.stages.labels(stage).observe(ms)


def sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@router.post("/v1/query", response_model=QueryResponse, responses=ERRORS)
def query(req: QueryRequest, state: StateDep, access: AccessDep):
    """Retrieve (hybrid by default) and answer with numbered citations; `stream` gives server-sent events:
    `retrieval` (contexts), `token`..., then `final` (the whole response, citations and timings)."""
    collection = req.collection or state.settings.collection
    access.check(collection)
    question = validate_question(state, req.question)
    params = params_from(state, req)
    state.engine.require_collection(collection)
    if not req.stream:
        result = state.answerer.ask(collection, question, params, generate=req.generate)
        record(state, result)
        return to_response(state, result, params)

    def events() -> Iterator[str]:
        for kind, payload in state.answerer.stream(collection, question, params):
            if kind == "retrieval":
                yield sse("retrieval", {"contexts": [asdict(c) for c in payload.contexts]})
            elif kind == "token":
                yield sse("token", {"text": payload})
            else:
                record(state, payload)
                yield sse("final", to_response(state, payload, params))

    return StreamingResponse(events(), media_type="text/event-stream")
