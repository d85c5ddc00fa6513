"""The query log over the API: feedback on an answer, the log itself, candidates to label, and golden sets
labelled from logged queries or audit cases. Every route is scoped by the API key like the rest: a key sees,
rates and labels only its collections' queries (another collection's query id is simply not found)."""

from __future__ import annotations

import time
import uuid
from typing import Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from core.errors import InvalidRequestError
from diagnostics.audit.golden import Case
from diagnostics.audit.labels import check_expected
from service.auth import Access
from service.deps import AccessDep, StateDep
from service.errors import ERRORS
from service.labels import append_case, display_name, read_rows, validate
from service.querylog.log import QueryLog
from service.querylog.rows import parse_since
from service.schemas.common import CollectionName, CollectionPath
from service.schemas.feedback import (
    Candidate,
    CaseAdded,
    FeedbackOut,
    GoldenSetOut,
    QueryPage,
    QueryRecordOut,
)

router = APIRouter(tags=["feedback and labeling"])


def visible(access: Access) -> list[str] | None:
    """The collections a key may see; None = all."""
    if access.collections is None or "*" in access.collections:
        return None
    return list(access.collections)


def querylog(state) -> QueryLog:
    log = getattr(state, "querylog", None)
    if log is None or not log.enabled:
        raise InvalidRequestError("query_log_off", "the query log is off (RAG_QUERY_LOG=false)", 409)
    return log


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"query_id": "3f2a...", "rating": -1, "comment": "cites the wrong page"}]},
    )
    query_id: str = Field(min_length=1, max_length=64, description="The `query_id` of a /v1/query response.")
    rating: Literal[1, -1] = Field(description="1 = thumbs up, -1 = thumbs down.")
    comment: str | None = Field(None, max_length=4000)
    correct_doc_id: str | None = Field(None, max_length=512, description="The document that holds the answer.")


@router.post("/v1/feedback", status_code=201, response_model=FeedbackOut, responses=ERRORS)
def post_feedback(req: FeedbackRequest, state: StateDep, access: AccessDep) -> dict:
    """Rate an answer. A key cannot rate another collection's query (404, as for an unknown id)."""
    return querylog(state).add_feedback(req.query_id, req.rating, req.comment, req.correct_doc_id, access.allows)


@router.get("/v1/queries", response_model=QueryPage, response_model_exclude_unset=True, responses=ERRORS)
def list_queries(
    state: StateDep,
    access: AccessDep,
    collection: CollectionName | None = None,
    since: str | None = Query(None, description="7d, 24h, 30m or an ISO date"),
    rating: Literal["up", "down", "any", "none"] | None = None,
    declined: bool | None = None,
    labelled: bool | None = None,
    q: str | None = Query(None, max_length=200, description="Text in the question or answer."),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict:
    """The query log, newest first, with filters; each item with its thumbs up/down counts."""
    log = getattr(state, "querylog", None)
    if log is None or not log.enabled:
        return {"enabled": False, "total": 0, "items": []}
    if collection:
        access.check(collection)
    out = log.list(visible(access), collection, parse_since(since), rating, declined, labelled, q, limit, offset)
    return {"enabled": True, **out}


@router.get(
    "/v1/queries/candidates", response_model=list[Candidate], response_model_exclude_unset=True, responses=ERRORS
)
def candidates(
    state: StateDep,
    access: AccessDep,
    collection: CollectionName | None = None,
    since: str | None = Query("7d", description="7d, 24h, 30m or an ISO date"),
    limit: int = Query(50, ge=1, le=500),
) -> list[dict]:
    """Unlabelled queries to label, ranked by signals (thumbs-down, declines, unsupported claims, a low top
    score, retrievers that disagree); `signals` says what each one scored for."""
    if collection:
        access.check(collection)
    return querylog(state).candidates(visible(access), collection, parse_since(since), limit)


@router.get("/v1/queries/{query_id}", response_model=QueryRecordOut, responses=ERRORS)
def get_query(query_id: str, state: StateDep, access: AccessDep) -> dict:
    """One logged query: question, settings, the contexts with their stage ranks, answer, citations,
    timings, faithfulness, and its feedback."""
    return querylog(state).get(query_id, access.allows)


@router.get("/v1/golden/{collection}", response_model=GoldenSetOut, responses=ERRORS)
def get_golden(collection: CollectionPath, state: StateDep, access: AccessDep) -> dict:
    """The collection's golden set as labelled in the UI (data_dir/golden/<collection>.jsonl), and the
    loader's complaint about it, if any."""
    access.check(collection)
    rows = read_rows(state.settings, collection)
    return {
        "collection": collection,
        "file": display_name(collection),
        "rows": rows,
        "error": validate(state.settings, collection),
    }


class LabelRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "query_id": "3f2a...",
                    "question": "What happens to a corrupt PDF during ingest?",
                    "expected": [{"doc_id": "docs/ingesting.md", "quote": "fails that file alone", "grade": 2}],
                    "answer": "The file fails alone; the rest of the job goes on.",
                }
            ]
        },
    )
    id: str | None = Field(None, max_length=128, description="Case id; default q-<query id> or a new one.")
    query_id: str | None = Field(None, max_length=64, description="The logged query this case comes from.")
    audit_id: str | None = Field(None, max_length=64, description="Or the audit (and case) it comes from.")
    audit_case: str | None = Field(None, max_length=128)
    question: str = Field(min_length=1, max_length=4000)
    expected: list[dict] = Field(
        [],
        max_length=50,
        description="Sources: doc_id, and a quote or a [start, end) span, grade (validated by the loader).",
    )
    answer: str | None = Field(None, max_length=8000, description="Reference answer.")
    unanswerable: bool = Field(False, description="The corpus cannot answer it: expected is empty, decline is right.")
    tags: list[str] = Field([], max_length=20)


def check_labels(state, collection: str, case: Case) -> None:
    """Labels are looked up in the index before they are written: a document the collection does not hold, a
    quote or span that is not in the document's stored text (with its closest sentence), or a document listed
    twice with different grades is refused (422 `label_not_found`, each problem in `details`)."""
    problems = check_expected(state.store, collection, list(case.expected))
    if problems:
        raise InvalidRequestError("label_not_found", "; ".join(p["message"] for p in problems)[:1000], 422, problems)


@router.post("/v1/golden/{collection}/cases", status_code=201, response_model=CaseAdded, responses=ERRORS)
def add_case(collection: CollectionPath, req: LabelRequest, state: StateDep, access: AccessDep) -> dict:
    """Append one labelled case to the collection's golden set; validated with the audit's own loader first
    (422 `golden_set_invalid` naming the line and field), then its sources looked up in the index (422
    `label_not_found`: an unknown document, a quote that is not in it, a document twice with other grades);
    nothing is written then."""
    access.check(collection)
    log = getattr(state, "querylog", None)
    if req.query_id:
        row = querylog(state).get(req.query_id, access.allows)
        if row["collection"] != collection:
            raise InvalidRequestError(
                "collection_mismatch", f"query {req.query_id!r} was asked of {row['collection']!r}", 409
            )
    if not req.unanswerable and not req.expected:
        raise InvalidRequestError(
            "nothing_labelled", "pick the passage(s) that answer it, or mark it unanswerable from this corpus", 422
        )
    case_id = req.id or (f"q-{req.query_id[:12]}" if req.query_id else f"case-{uuid.uuid4().hex[:10]}")
    tags = list(dict.fromkeys([*req.tags, *(["unanswerable"] if req.unanswerable else [])]))
    case: dict = {"id": case_id, "question": req.question.strip(), "expected": [] if req.unanswerable else req.expected}
    if req.answer and req.answer.strip() and not req.unanswerable:
        case["answer"] = req.answer.strip()
    case["tags"] = tags
    source = {"labelled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if req.query_id:
        source["query_id"] = req.query_id
    if req.audit_id:
        source.update(audit_id=req.audit_id, audit_case=req.audit_case)
    case["source"] = source
    n = append_case(state.settings, collection, case, lambda c: check_labels(state, collection, c))
    if req.query_id and log is not None:
        log.mark_labelled(req.query_id, case_id)
    return {"case": case, "file": display_name(collection), "rows": n}
