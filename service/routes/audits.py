"""Audits as API jobs: `POST /v1/audits` with a golden set in the body (never a server path), then poll
`GET /v1/audits/{id}` for progress and the report. Same code as `rag audit`."""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from core.errors import InvalidRequestError, RagError
from diagnostics.audit import Auditor
from diagnostics.faithfulness import FaithfulnessScorer
from diagnostics.golden import load_golden
from service.deps import AccessDep, StateDep
from service.routes.query import ERRORS
from service.schemas import CollectionName

router = APIRouter(tags=["audits"])
_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
_jobs: dict[str, dict] = {}
_lock = threading.Lock()


class AuditRequest(BaseModel):
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
    ks: list[int] = Field([1, 3, 5, 10], min_length=1)
    generate: bool = False


@router.post("/v1/audits", status_code=202, responses=ERRORS)
def start_audit(req: AuditRequest, state: StateDep, access: AccessDep) -> dict:
    collection = req.collection or state.settings.collection
    access.check(collection)
    state.engine.require_collection(collection)
    if any(k < 1 for k in req.ks):
        raise InvalidRequestError("invalid_parameters", "ks must be whole numbers >= 1")
    with tempfile.TemporaryDirectory() as tmp:  # validated with the very loader the CLI uses
        path = Path(tmp) / "golden.jsonl"
        path.write_text("\n".join(json.dumps(c) for c in req.cases))
        golden = load_golden(path)
    job = {
        "id": uuid.uuid4().hex,
        "collection": collection,
        "status": "queued",
        "created_at": time.time(),
        "progress": {"cases": 0, "total": len(golden.cases)},
        "report": None,
        "error": None,
    }
    with _lock:
        _jobs[job["id"]] = job

    def work() -> None:
        job["status"] = "running"
        try:
            params = state.engine.params()
            scorer = FaithfulnessScorer(state.retriever.embedder, state.retriever.bm25)
            tick = lambda n: job["progress"].__setitem__("cases", job["progress"]["cases"] + n)  # noqa: E731
            job["report"] = Auditor(state.answerer, state.store, scorer).run(
                golden, collection, params, req.ks, req.generate, progress=tick
            )
            job["status"] = "succeeded"
        except RagError as exc:
            job.update(status="failed", error=f"{exc.code}: {exc}")
        except Exception as exc:  # a job must end with a state
            job.update(status="failed", error=f"{type(exc).__name__}: {exc}")

    _pool.submit(work)
    return {k: v for k, v in job.items() if k != "report"}


@router.get("/v1/audits/{audit_id}", responses=ERRORS)
def get_audit(audit_id: str, access: AccessDep) -> dict:
    job = _jobs.get(audit_id)
    if job is None or not access.allows(job["collection"]):
        raise InvalidRequestError("audit_not_found", f"no audit {audit_id!r}", 404)
    return job
