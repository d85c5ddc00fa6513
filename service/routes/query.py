"""POST /v1/query: question -> answer with citations, contexts with per-stage ranks, timings, manifest."""

from __future__ import annotations

from dataclasses import asdict
from typing import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from engine.answer import AnswerResult
from engine.params import RetrievalParams
from engine.rewrite import Turn
from service.deps import AccessDep, StateDep
from service.errors import ERRORS
from service.querying import history_from, record, rewrite_log, sse, started, validate_question
from service.querylog.capture import log_query, new_query_id
from service.schemas.query import QueryRequest, QueryResponse
from service.state import ServiceState

router = APIRouter(tags=["query"])


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
        "rewrite": asdict(result.rewrite) if result.rewrite else None,
    }


@router.post("/v1/query", response_model=QueryResponse, responses=ERRORS)
def query(req: QueryRequest, state: StateDep, access: AccessDep):
    """Retrieve (hybrid by default) and answer with numbered citations; `stream` gives server-sent events:
    `retrieval` (contexts), `token`..., then `final` (the whole response, citations and timings)."""
    collection = req.collection or state.settings.collection
    access.check(collection)
    question = validate_question(state, req.question)
    params = params_from(state, req)
    history = history_from(state, [Turn(t.role, t.content) for t in req.history or []])
    rewrite = req.rewrite is not False
    state.engine.require_collection(collection)
    query_id = new_query_id(state)  # in the response (and the final event): what /v1/feedback rates
    if not req.stream:
        result = state.answerer.ask(collection, question, params, req.generate, history, rewrite)
        record(state, result)
        log_query(state, query_id, result, params, "query", generate=req.generate, **rewrite_log(result))
        return {**to_response(state, result, params), "query_id": query_id}

    def events() -> Iterator[str]:
        for kind, payload in state.answerer.stream(collection, question, params, history, rewrite):
            if kind == "retrieval":
                yield sse("retrieval", {"contexts": [asdict(c) for c in payload.contexts]})
            elif kind == "token":
                yield sse("token", {"text": payload})
            else:
                record(state, payload)
                log_query(state, query_id, payload, params, "stream", generate=True, **rewrite_log(payload))
                yield sse("final", {**to_response(state, payload, params), "query_id": query_id})

    on_error = lambda error: sse("error", {"error": error})  # noqa: E731
    return StreamingResponse(started(events(), on_error), media_type="text/event-stream")
