"""Golden sets on the server (service/labels.py): the set written out for audits, its cases searched, paged,
labelled, edited and deleted, and its history with a revert of any change. Every route is scoped by the API
key like the rest (403 for another collection's set); a case is checked by the audit's own loader (422
`golden_set_invalid` naming the line and field) and its sources looked up in the index (422
`label_not_found`) before anything is written."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query

from core.errors import InvalidRequestError
from diagnostics.audit.golden import Case
from diagnostics.audit.labels import check_expected
from service.deps import AccessDep, OwnerDep, StateDep
from service.errors import ERRORS
from service.labels import GoldenStore, case_row, display_name
from service.schemas.common import CollectionPath
from service.schemas.golden import (
    CaseAdded,
    CaseEdit,
    CaseFields,
    CaseUpdated,
    ChangeDone,
    GoldenCaseOut,
    GoldenPage,
    GoldenSetOut,
    HistoryPage,
    LabelRequest,
)

router = APIRouter(tags=["golden sets"])

CaseId = Annotated[str, Path(min_length=1, max_length=128, description="The case's id.")]


def golden(state) -> GoldenStore:
    store = getattr(state, "golden", None)
    if store is None:
        raise InvalidRequestError("golden_unavailable", "golden sets are not served by this service", 503)
    return store


def check_labels(state, collection: str, case: Case) -> None:
    """Labels are looked up in the index before they are written: a document the collection does not hold, a
    quote or span that is not in the document's stored text (with its closest sentence), or a document listed
    twice with different grades is refused (422 `label_not_found`, each problem in `details`)."""
    problems = check_expected(state.store, collection, list(case.expected))
    if problems:
        raise InvalidRequestError("label_not_found", "; ".join(p["message"] for p in problems)[:1000], 422, problems)


def require_label(req: CaseFields) -> None:
    if not req.unanswerable and not req.expected:
        raise InvalidRequestError(
            "nothing_labelled", "pick the passage(s) that answer it, or mark it unanswerable from this corpus", 422
        )


@router.get("/v1/golden/{collection}", response_model=GoldenSetOut, responses=ERRORS)
def get_golden(collection: CollectionPath, state: StateDep, access: AccessDep) -> dict:
    """The collection's golden set written out in the audit loader's format (what an audit of it reads), and
    the loader's complaint about it, if any."""
    access.check(collection)
    store = golden(state)
    return {
        "collection": collection,
        "file": display_name(collection),
        "rows": store.rows(collection),
        "error": store.validate(collection),
    }


@router.post("/v1/golden/{collection}/cases", status_code=201, response_model=CaseAdded, responses=ERRORS)
def add_case(
    collection: CollectionPath, req: LabelRequest, state: StateDep, access: AccessDep, owner: OwnerDep
) -> dict:
    """Add one labelled case to the collection's golden set; validated with the audit's own loader first
    (422 `golden_set_invalid` naming the line and field), then its sources looked up in the index (422
    `label_not_found`: an unknown document, a quote that is not in it, a document twice with other grades);
    nothing is written then. 409 `case_exists` for an id the set has, `golden_set_full` at the cap."""
    access.check(collection)
    if req.query_id:
        log = getattr(state, "querylog", None)
        if log is None or not log.enabled:
            raise InvalidRequestError("query_log_off", "the query log is off (RAG_QUERY_LOG=false)", 409)
        row = log.get(req.query_id, access.allows)
        if row["collection"] != collection:
            raise InvalidRequestError(
                "collection_mismatch", f"query {req.query_id!r} was asked of {row['collection']!r}", 409
            )
    require_label(req)
    case_id = req.id or (f"q-{req.query_id[:12]}" if req.query_id else f"case-{uuid.uuid4().hex[:10]}")
    case = case_row(case_id, req.question, req.expected, req.answer, req.unanswerable, req.tags)
    source: dict = {"labelled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if req.query_id:
        source["query_id"] = req.query_id
    if req.audit_id:
        source.update(audit_id=req.audit_id, audit_case=req.audit_case)
    case["source"] = source
    out = golden(state).create(collection, case, owner, lambda c: check_labels(state, collection, c))
    return {**out, "file": display_name(collection)}


@router.get("/v1/golden/{collection}/cases", response_model=GoldenPage, responses=ERRORS)
def list_cases(
    collection: CollectionPath,
    state: StateDep,
    access: AccessDep,
    q: str | None = Query(None, max_length=200, description="Words of the question, or text anywhere in the case."),
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> dict:
    """The set's cases in order, searched and paged, each with its version and who changed it last."""
    access.check(collection)
    page = golden(state).page(collection, q, limit, offset)
    return {"collection": collection, "limit": state.settings.golden_max_cases, **page}


@router.get("/v1/golden/{collection}/cases/{case_id:path}", response_model=GoldenCaseOut, responses=ERRORS)
def get_case(collection: CollectionPath, case_id: CaseId, state: StateDep, access: AccessDep) -> dict:
    access.check(collection)
    return golden(state).get(collection, case_id)


@router.put("/v1/golden/{collection}/cases/{case_id:path}", response_model=CaseUpdated, responses=ERRORS)
def edit_case(
    collection: CollectionPath, case_id: CaseId, req: CaseEdit, state: StateDep, access: AccessDep, owner: OwnerDep
) -> dict:
    """Edit a case with the labelling form's fields and checks (the loader's, then the index's: 422
    `golden_set_invalid`, `label_not_found`, `nothing_labelled`); where it came from and its conversation are
    kept. With `version`, 409 `case_changed` when someone changed it since. The change goes into the history."""
    access.check(collection)
    if req.id is not None and req.id != case_id:
        raise InvalidRequestError("id_mismatch", "a case keeps its id: the body's id is not the path's", 422)
    require_label(req)

    def build(old: dict) -> dict:
        row = case_row(case_id, req.question, req.expected, req.answer, req.unanswerable, req.tags)
        kept = {k: v for k, v in old.items() if k not in (*row, "answer", "needs_label", "turns")}
        turns = old.get("turns")
        if isinstance(turns, list) and turns and "history" not in old:  # the question is asked here now
            kept["history"] = turns[:-1]
        return {**row, **kept}

    return golden(state).replace(
        collection, case_id, build, owner, req.version, lambda c: check_labels(state, collection, c)
    )


@router.delete("/v1/golden/{collection}/cases/{case_id:path}", response_model=ChangeDone, responses=ERRORS)
def delete_case(
    collection: CollectionPath,
    case_id: CaseId,
    state: StateDep,
    access: AccessDep,
    owner: OwnerDep,
    version: int | None = Query(None, ge=1, description="The version deleted: 409 case_changed if it changed since."),
) -> dict:
    """Delete a case; the history keeps it (revert the change to bring it back)."""
    access.check(collection)
    return golden(state).delete(collection, case_id, owner, version)


@router.get("/v1/golden/{collection}/history", response_model=HistoryPage, responses=ERRORS)
def history(
    collection: CollectionPath,
    state: StateDep,
    access: AccessDep,
    case_id: str | None = Query(None, min_length=1, max_length=128, description="Only this case's changes."),
    limit: int = Query(50, ge=1, le=200),
    before: int | None = Query(None, ge=1, le=2**31 - 1, description="Changes before this id: the next page."),
) -> dict:
    """Every change to the set, newest first: who (the key's owner id), what, when, the case before and after,
    and which revert undid it."""
    access.check(collection)
    return {"collection": collection, **golden(state).history(collection, case_id, limit, before)}


@router.post(
    "/v1/golden/{collection}/history/{change_id}/revert", status_code=201, response_model=ChangeDone, responses=ERRORS
)
def revert(
    collection: CollectionPath,
    state: StateDep,
    access: AccessDep,
    owner: OwnerDep,
    change_id: int = Path(ge=1, le=2**31 - 1),
) -> dict:
    """Undo one change: the case goes back to what it was before it (a deleted case comes back, a created one
    goes). Refused while a later change sits on top (409 `revert_conflict`: undo that first); the revert is a
    change itself, so it can be undone too."""
    access.check(collection)
    return golden(state).revert(collection, change_id, owner)
