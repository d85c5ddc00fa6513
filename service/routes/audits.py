"""Audits as API jobs: `POST /v1/audits` with a golden set in the body (never a server path), then poll
`GET /v1/audits/{id}` (or `/v1/jobs/{id}`) for progress and the report; `POST /v1/jobs/{id}/cancel` stops one.
Same code as `rag audit`. Audits are jobs of the one job system (service/jobs/): queued per API key, kept
in the service database, bounded in cases and question length. The request and its checks are in
service/jobs/requests.py, the run in service/jobs/runners.py. Without `cases`, the audit reads the
collection's golden set from the service database (service/labels.py), written out as the loader reads it."""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import Field

from core.errors import InvalidRequestError
from diagnostics.audit.ingest_records import failed_files
from service.deps import AccessDep, OwnerDep, StateDep, scope, visible_job
from service.errors import ERRORS
from service.jobs.requests import AuditRequest, check_cases, golden_from_cases, require_judge
from service.schemas.jobs import AuditPage, AuditSubmitted, JobReport

router = APIRouter(tags=["audits"])


class AuditOfSet(AuditRequest):
    """An audit of the cases given, or (no `cases`) of the collection's golden set on the server."""

    cases: list[dict] | None = Field(
        None,
        min_length=1,
        description="Golden-set cases, in the JSONL format's fields; left out: the collection's golden set as the "
        "server holds it (GET /v1/golden/{collection}).",
    )


def server_cases(state, collection: str) -> list[dict]:
    golden = getattr(state, "golden", None)
    rows = golden.rows(collection) if golden is not None else []
    if not rows:
        raise InvalidRequestError(
            "golden_set_empty", f"the golden set of {collection!r} has no cases: label some, or send cases", 422
        )
    return rows


@router.post("/v1/audits", status_code=202, response_model=AuditSubmitted, responses=ERRORS)
def start_audit(req: AuditOfSet, state: StateDep, access: AccessDep, owner: OwnerDep) -> dict:
    s = state.settings
    collection = req.collection or s.collection
    access.check(collection)
    state.engine.require_collection(collection)
    cases = req.cases if req.cases is not None else server_cases(state, collection)
    check_cases(s, cases, req.ks)
    golden = golden_from_cases(cases)
    state.engine.params(rerank=req.rerank)  # rerank_unavailable now, not in the job
    card = require_judge(s) if req.generate else None  # judge_unavailable now, not in the job
    if req.judge and req.generate and not (s.judge_base_url or s.llm_base_url):  # the ragas judge, in the job
        raise InvalidRequestError(
            "judge_unavailable",
            "judge needs an OpenAI-compatible endpoint (RAG_JUDGE_BASE_URL or RAG_LLM_BASE_URL)",
            409,
        )
    try:  # read now as the job reads them, so a malformed record is a 400 here, not a failed job
        failed_files(req.ingest_reports or [])
    except (TypeError, AttributeError, ValueError):
        raise InvalidRequestError(
            "invalid_parameters",
            "ingest_reports: each is an ingest report or job record ({files: [{path, status, reason}]})",
        ) from None
    state.jobs.check_queue(owner)
    request = {**req.model_dump(mode="json"), "collection": collection, "cases": cases}
    job = state.jobs.submit(
        "audit", collection, owner, request=request, progress={"cases": 0, "total": len(golden.cases)}
    )
    return {**{k: v for k, v in job.items() if k not in ("report", "files")}, "faithfulness_judge": card}


@router.get("/v1/audits", response_model=AuditPage, responses=ERRORS)
def list_audits(
    state: StateDep,
    access: AccessDep,
    limit: int = Query(50, ge=1, le=200),
    before: float | None = Query(None, ge=0, le=1e11, description="Created before this Unix time: the next page."),
) -> dict:
    """Audits of the collections this key may read, newest first, from the API, the UI and `rag audit --submit`
    alike (every job of kind audit): status, cases, settings, the golden set's hash, verdicts and summary."""
    items = state.jobs.list("audit", scope(access), limit, before)
    return {"items": items, "next_before": items[-1]["created_at"] if len(items) == limit else None}


@router.get("/v1/audits/{audit_id}", response_model=JobReport, responses=ERRORS)
def get_audit(audit_id: str, state: StateDep, access: AccessDep) -> dict:
    return visible_job(state, access, audit_id, "audit", lambda job: access.allows(job["collection"]))
