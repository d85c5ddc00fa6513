"""POST /v1/query: question -> answer with citations, contexts with per-stage ranks, timings, manifest."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from rag.errors import InvalidRequestError
from service.answer import AnswerResult
from service.deps import AccessDep, StateDep
from service.retrieval import RetrievalParams
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
            "question_too_long", f"the question has {len(q)} characters; the limit is {state.settings.max_question_chars}"
        )
    return q


def params_from(state: ServiceState, req: QueryRequest) -> RetrievalParams:
    s, f = state.settings, req.fusion
    if req.rerank and state.retriever.reranker is None:
        raise InvalidRequestError("rerank_unavailable", "no reranker is configured (set RAG_RERANK_MODEL)")
    try:
        return RetrievalParams(
            mode=req.mode or s.retrieval_mode,
            fusion=(f.method if f and f.method else s.fusion),
            rrf_k=(f.rrf_k if f and f.rrf_k else s.rrf_k),
            weights=(f.weights if f and f.weights else s.rrf_weights),
            top_k=req.top_k,
            candidates=max(req.candidates or s.candidates, req.top_k),
            filters=req.filters,
            rerank=req.rerank,
            rerank_candidates=s.rerank_candidates,
        )
    except ValueError as exc:
        raise InvalidRequestError("invalid_parameters", str(exc)) from exc


def manifest(state: ServiceState, collection: str, params: RetrievalParams) -> dict:
    spec = state.store.get_spec(collection)
    return {
        "embedding": spec.embedding if spec else None,
        "chunker": spec.chunker if spec else None,
        "sparse": spec.sparse if spec else None,
        "store": state.store.backend,
        "retrieval": {"mode": params.mode, "fusion": params.fusion, "rrf_k": params.rrf_k,
                      "weights": params.weights, "candidates": params.candidates, "rerank": params.rerank,
                      "reranker": getattr(state.retriever.reranker, "name", None)},
        "generator": state.answerer.generator.name,
    }


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
        "manifest": manifest(state, result.collection, params),
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
    if state.store.get_spec(collection) is None:
        from rag.errors import CollectionNotFoundError

        raise CollectionNotFoundError(f"no collection named {collection!r}")
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
