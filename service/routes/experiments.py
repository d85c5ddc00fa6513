"""Experiments as API jobs: `POST /v1/experiments` with a golden set and 2+ pipeline variants in the body (TOML
text or the same fields as JSON, never a server path), then poll `GET /v1/experiments/{id}` (or `/v1/jobs/{id}`)
for progress and the comparison; `POST /v1/jobs/{id}/cancel` stops one. Same code as `rag experiment`
(diagnostics/ladder/experiment.py); jobs of the one job system, bounded like audits. The request and its
checks are in service/jobs/requests.py, the run in service/jobs/runners.py."""

from __future__ import annotations

from fastapi import APIRouter, Query

from core.errors import InvalidRequestError
from service.deps import AccessDep, OwnerDep, StateDep, job_visible, scope, visible_job
from service.errors import ERRORS
from service.jobs.requests import (
    ExperimentRequest,
    check_cases,
    golden_from_cases,
    parse_variants,
    require_judge,
)
from service.schemas.jobs import ExperimentPage, JobReport, JobStatus

router = APIRouter(tags=["experiments"])


@router.post("/v1/experiments", status_code=202, response_model=JobStatus, responses=ERRORS)
def start_experiment(req: ExperimentRequest, state: StateDep, access: AccessDep, owner: OwnerDep) -> dict:
    """Audit each variant on the same cases and compare each with the first (paired bootstrap per metric)."""
    s = state.settings
    collection = req.collection or s.collection
    check_cases(s, req.cases, req.ks)
    variants = parse_variants(req.variants)
    for v in variants:  # every collection a variant runs on: the key's to read, and there
        access.check(v.collection or collection)
        state.engine.require_collection(v.collection or collection)
    golden = golden_from_cases(req.cases)
    if req.generate or any(v.generates for v in variants):
        require_judge(s)
    for v in variants:  # what the job would fail on, said now
        state.engine.params(**v.retrieval)  # rerank_unavailable
        vs = v.settings(s)
        if (v.generates or req.generate) and v.judge is not None and not (vs.judge_base_url or vs.llm_base_url):
            raise InvalidRequestError(
                "judge_unavailable", f"{v.name}: [judge] needs the service's judge endpoint (RAG_JUDGE_BASE_URL)", 409
            )
        gen = (v.generation or {}).get("generator")
        if gen == "llm" and (v.generates or req.generate) and not s.llm_base_url:
            raise InvalidRequestError(
                "invalid_variant", f"{v.name}: generator llm needs the service's LLM endpoint (RAG_LLM_BASE_URL)"
            )
    state.jobs.check_queue(owner)
    request = {**req.model_dump(mode="json"), "collection": collection}
    total = len(golden.cases) * len(variants)
    job = state.jobs.submit("experiment", collection, owner, request=request, progress={"cases": 0, "total": total})
    return {k: v for k, v in job.items() if k not in ("report", "files")}


@router.get("/v1/experiments", response_model=ExperimentPage, responses=ERRORS)
def list_experiments(
    state: StateDep,
    access: AccessDep,
    limit: int = Query(50, ge=1, le=200),
    before: float | None = Query(None, ge=0, le=1e11, description="Created before this Unix time: the next page."),
) -> dict:
    """Experiments this key may read (every collection their variants ran on), newest first."""
    rows = state.jobs.list("experiment", scope(access), limit, before)
    items = [r for r in rows if all(access.allows(c) for c in [r["collection"], *r.get("collections", [])])]
    return {"items": items, "next_before": rows[-1]["created_at"] if len(rows) == limit else None}


@router.get("/v1/experiments/{experiment_id}", response_model=JobReport, responses=ERRORS)
def get_experiment(experiment_id: str, state: StateDep, access: AccessDep) -> dict:
    """The job; once it has succeeded, `report` is the comparison (`rag experiment`'s experiment.json) with
    `markdown`, its table."""
    return visible_job(state, access, experiment_id, "experiment", lambda job: job_visible(job, access))
