"""Audits as API jobs: `POST /v1/audits` with a golden set in the body (never a server path), then poll
`GET /v1/audits/{id}` (or `/v1/jobs/{id}`) for progress and the report; `POST /v1/jobs/{id}/cancel` stops one.
Same code as `rag audit`. Audits are jobs of the one job system (service/jobs.py): queued per API key, kept
in the service database, bounded in cases and question length."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from core.errors import ConfigError, InvalidRequestError
from core.settings import Settings
from diagnostics.audit.golden import GoldenSet, load_golden
from diagnostics.audit.run import Auditor
from diagnostics.judges.factory import judge_card, make_judge
from service.deps import AccessDep, StateDep
from service.jobs import JobContext, Outcome, Runner
from service.routes.documents import OwnerDep
from service.routes.query import ERRORS
from service.schemas import CollectionName

router = APIRouter(tags=["audits"])


class AuditRequest(BaseModel):
    """An audit. The whole request is kept with the job and handed to the run as it is, so a new option is a
    new field here and its use in `audit_runner`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "collection": "docs",
                    "ks": [1, 3, 5, 10],
                    "generate": True,
                    "cases": [
                        {
                            "id": "q1",
                            "question": "What happens to a corrupt PDF?",
                            "expected": [{"doc_id": "docs/ingesting.md"}],
                        }
                    ],
                }
            ]
        }
    )
    collection: CollectionName | None = None
    cases: list[dict] = Field(min_length=1, description="Golden-set cases, in the JSONL format's fields.")
    ks: list[int] = Field([1, 3, 5, 10], min_length=1, max_length=20)
    generate: bool = False
    rerank: bool | None = Field(None, description="Audit with the reranker on or off; default: the service's.")
    judge: bool = Field(False, description="With generate: the ragas LLM judge (RAG_JUDGE_*) decides faithfulness.")
    corpus: list[str] | None = Field(
        None,
        max_length=1_000_000,
        description="Document ids the collection was built from: tells not_in_corpus from not_in_index.",
    )
    ingest_reports: list[dict] | None = Field(
        None,
        max_length=1000,
        description="Ingest reports or job records (`rag ingest --json`, GET /v1/jobs/{id}): documents whose file "
        "failed are reported failed_to_ingest with the reason.",
    )


def _golden(cases: list[dict]) -> GoldenSet:
    with tempfile.TemporaryDirectory() as tmp:  # validated with the very loader the CLI uses
        path = Path(tmp) / "golden.jsonl"
        path.write_text("\n".join(json.dumps(c) for c in cases))
        return load_golden(path)


def check_cases(s: Settings, cases: list[dict], ks: list[int]) -> None:
    """The bounds of an audit (and an experiment): cut-offs, number of cases, question length."""
    if any(k < 1 or k > 1000 for k in ks):
        raise InvalidRequestError("invalid_parameters", "ks must be whole numbers from 1 to 1000")
    if len(cases) > s.audit_max_cases:
        raise InvalidRequestError("too_many_cases", f"{len(cases)} cases; the limit is {s.audit_max_cases}", 413)
    for case in cases:
        question = case.get("question")
        if isinstance(question, str) and len(question) > s.max_question_chars:
            raise InvalidRequestError(
                "question_too_long",
                f"case {str(case.get('id'))[:64]!r}: the question is over {s.max_question_chars} characters",
            )


def require_judge(s: Settings) -> dict:
    """The configured faithfulness judge's card (name, measured agreement); 409 judge_unavailable if it cannot
    be built (no model trained, no endpoint)."""
    try:
        return judge_card(s)
    except ConfigError as exc:
        raise InvalidRequestError("judge_unavailable", str(exc), 409) from None


@router.post("/v1/audits", status_code=202, responses=ERRORS)
def start_audit(req: AuditRequest, state: StateDep, access: AccessDep, owner: OwnerDep) -> dict:
    s = state.settings
    collection = req.collection or s.collection
    access.check(collection)
    state.engine.require_collection(collection)
    check_cases(s, req.cases, req.ks)
    golden = _golden(req.cases)
    state.engine.params(rerank=req.rerank)  # rerank_unavailable now, not in the job
    card = require_judge(s) if req.generate else None  # judge_unavailable now, not in the job
    state.jobs.check_queue(owner)
    request = {**req.model_dump(mode="json"), "collection": collection}
    job = state.jobs.submit(
        "audit", collection, owner, request=request, progress={"cases": 0, "total": len(golden.cases)}
    )
    return {**{k: v for k, v in job.items() if k not in ("report", "files")}, "faithfulness_judge": card}


@router.get("/v1/audits/{audit_id}", responses=ERRORS)
def get_audit(audit_id: str, state: StateDep, access: AccessDep) -> dict:
    return visible_job(state, access, audit_id, "audit", lambda job: access.allows(job["collection"]))


def visible_job(state, access, job_id: str, kind: str, visible) -> dict:
    """The job of this kind if `visible(job)` says the key may see it, without its files; else 404
    `<kind>_not_found` (the same answer as for no such job, so ids of others' jobs are not confirmed)."""
    job = state.jobs.get(job_id, kind=kind)
    if job is None or not visible(job):
        raise InvalidRequestError(f"{kind}_not_found", f"no {kind} {job_id[:64]!r}", 404)
    return {k: v for k, v in job.items() if k != "files"}


def audit_runner(engine) -> Runner:
    """Run an audit job on the service's engine; it stops between cases when asked (cancel, limit, shutdown)."""

    def run(ctx: JobContext) -> Outcome:
        req = AuditRequest.model_validate(ctx.request)
        golden = _golden(req.cases)
        scorer = make_judge(engine.settings, engine.retriever.embedder, engine.retriever.bm25) if req.generate else None
        judge = None
        if req.judge and req.generate:
            from diagnostics.judges.ragas_metrics import RagasJudge

            judge = RagasJudge(engine.settings, engine.settings.data_dir / "judge_cache.jsonl")

        ctx.check_stop()
        report = Auditor(engine.answerer, engine.store, scorer, judge).run(
            golden,
            ctx.collection,
            engine.params(rerank=req.rerank),
            req.ks,
            req.generate,
            set(req.corpus) if req.corpus is not None else None,
            progress=ctx.count_cases,
            ingest_records=req.ingest_reports,
        )
        return Outcome(report, "succeeded")

    return run
