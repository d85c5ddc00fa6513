"""POST /v1/query: question -> answer with citations, contexts with per-stage ranks, timings, manifest."""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import asdict
from typing import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from core.errors import InvalidRequestError, RagError
from engine.answer import AnswerResult
from engine.params import RetrievalParams
from engine.rewrite import Turn
from service.deps import AccessDep, StateDep
from service.querylog import log_query, new_query_id
from service.schemas import ErrorResponse, QueryRequest, QueryResponse
from service.state import ServiceState

router = APIRouter(tags=["query"])
log = logging.getLogger("rag.service")

ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 422, 503)}


def validate_question(state: ServiceState, question: str) -> str:
    q = question.strip()
    try:
        q.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): no tokenizer or store takes it
        raise InvalidRequestError("invalid_text", "the question is not valid Unicode text (a lone surrogate)") from None
    if not q:
        raise InvalidRequestError("empty_question", "the question is empty")
    if len(q) > state.settings.max_question_chars:
        raise InvalidRequestError(
            "question_too_long",
            f"the question has {len(q)} characters; the limit is {state.settings.max_question_chars}",
        )
    return q


def history_from(state: ServiceState, turns: list[Turn] | None) -> list[Turn] | None:
    """The conversation before the question, checked; None when there is none."""
    if not turns:
        return None
    if len(turns) > state.settings.max_history_turns:
        raise InvalidRequestError(
            "history_too_long", f"the history has {len(turns)} turns; the limit is {state.settings.max_history_turns}"
        )
    for t in turns:
        try:
            t.text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequestError("invalid_text", "a history turn is not valid Unicode text") from None
    return turns


def rewrite_log(result: AnswerResult) -> dict:
    """The rewrite stage for the query log's options (nothing when the question came alone)."""
    return {"rewrite": asdict(result.rewrite)} if result.rewrite else {}


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


def record(state: ServiceState, result: AnswerResult) -> None:
    for stage, ms in result.timings_ms.items():
        state.metrics.stages.labels(stage).observe(ms)


def sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def started(events: Iterator[str], on_error) -> Iterator[str]:
    """Run a stream up to its first event now, so a failure there (retrieval: a vanished collection, a store
    error) is an HTTP error before any byte is sent; a failure after that becomes one last event,
    `on_error({"code", "message"})`, since the status line is gone by then."""
    first = next(events, None)  # raises before the response starts

    def rest() -> Iterator[str]:
        try:
            yield from events
        except RagError as exc:
            yield on_error({"code": exc.code, "message": str(exc)})
        except Exception:
            log.exception("stream failed mid-way")
            yield on_error({"code": "internal_error", "message": "internal error; the service log has the details"})

    return itertools.chain([] if first is None else [first], rest())


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
