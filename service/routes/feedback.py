"""The query log over the API: feedback on an answer, the log itself and candidates to label (golden sets are
service/routes/golden.py). Every route is scoped by the API key like the rest: a key sees and rates only its
collections' queries (another collection's query id is simply not found). Each logged query says whether the
golden set labels it (`labelled_case_id`: the case made from it, or one asking the same question)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from core.errors import InvalidRequestError
from diagnostics.audit.labels import similar_id
from service.auth import Access
from service.deps import AccessDep, OwnerDep, StateDep
from service.errors import ERRORS
from service.querylog.log import UNSET, QueryLog
from service.querylog.rows import parse_since
from service.schemas.common import CollectionName
from service.schemas.feedback import Candidate, FeedbackOut, QueryPage, QueryRecordOut

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


def golden_links(state, access: Access, items: list[dict]) -> list[dict]:
    """Each query's `labelled_case_id` (the golden set's old files imported first, so they count)."""
    golden = getattr(state, "golden", None)
    if golden is None:
        return items
    golden.ensure_files(access.allows)
    return golden.annotate(items)


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
def post_feedback(
    req: FeedbackRequest, state: StateDep, access: AccessDep, owner: OwnerDep, response: Response
) -> dict:
    """Rate an answer: one vote per API key and query, the last one stands (201 the first time, 200 when it
    replaces the key's earlier vote, whose fields left out here are kept). A key cannot rate another
    collection's query (404, as for an unknown id); a `correct_doc_id` the collection does not hold is refused
    (422 `correct_doc_not_found`, naming a similar id of the query's sources when one looks misspelt)."""
    log = querylog(state)
    row = log.get(req.query_id, access.allows)
    if req.correct_doc_id:
        check_doc(state, row, req.correct_doc_id)
    given = req.model_fields_set
    out = log.add_feedback(
        req.query_id,
        req.rating,
        req.comment if "comment" in given else UNSET,
        (req.correct_doc_id or None) if "correct_doc_id" in given else UNSET,
        access.allows,
        voter=owner,
    )
    if out["previous_rating"] is not None:
        response.status_code = 200
    return out


def check_doc(state, row: dict, doc_id: str) -> None:
    if state.store.count(row["collection"], {"doc_id": doc_id}) > 0:
        return
    seen = {c.get("doc_id") for c in row.get("contexts") or []}
    seen |= {d for top in (row.get("stage_tops") or {}).values() for d, _ in top}
    near = similar_id(doc_id, {d for d in seen if isinstance(d, str)})
    hint = f" (did you mean {near!r}?)" if near else ""
    raise InvalidRequestError(
        "correct_doc_not_found", f"no document {doc_id[:200]!r} in collection {row['collection']!r}{hint}", 422
    )


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
    offset: int = Query(0, ge=0, le=10**9, description="Rows to skip (at most a billion: a bigint holds no more)."),
) -> dict:
    """The query log, newest first, with filters; each item with its thumbs up/down counts."""
    log = getattr(state, "querylog", None)
    if log is None or not log.enabled:
        return {"enabled": False, "total": 0, "items": []}
    if collection:
        access.check(collection)
    out = log.list(visible(access), collection, parse_since(since), rating, declined, labelled, q, limit, offset)
    golden_links(state, access, out["items"])
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
    items = querylog(state).candidates(visible(access), collection, parse_since(since), limit)
    return golden_links(state, access, items)


@router.get("/v1/queries/{query_id}", response_model=QueryRecordOut, responses=ERRORS)
def get_query(query_id: str, state: StateDep, access: AccessDep) -> dict:
    """One logged query: question, settings, the contexts with their stage ranks, answer, citations,
    timings, faithfulness, and its feedback."""
    return golden_links(state, access, [querylog(state).get(query_id, access.allows)])[0]
