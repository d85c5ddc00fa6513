"""Collections, documents and ingest jobs: upload files to start a job, poll it, list and delete documents."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from core.errors import InvalidRequestError
from ingest.parsers import doc_type_of
from service.deps import AccessDep, StateDep
from service.routes.query import ERRORS
from service.schemas import CollectionPath, DocumentOut, JobOut

router = APIRouter(tags=["documents"])
CHUNK = 1 << 20


def _safe_name(name: str | None) -> str:
    base = Path(name or "").name  # no directories: nothing outside the upload folder can be named
    base = re.sub(r"[^\w.\- ]", "_", base).strip(" .")
    if not base:
        raise InvalidRequestError("invalid_filename", f"unusable file name {name!r}")
    return base


@router.get("/v1/collections", responses=ERRORS)
def list_collections(state: StateDep, access: AccessDep) -> list[dict]:
    return [
        {"name": n, "points": state.store.count(n), "spec": state.store.get_spec(n).to_metadata()}
        for n in state.store.list_collections()
        if access.allows(n)
    ]


@router.post("/v1/collections/{collection}/documents", status_code=202, response_model=JobOut, responses=ERRORS)
def upload(
    collection: CollectionPath,
    files: Annotated[list[UploadFile], File(description="Documents to ingest")],
    state: StateDep,
    access: AccessDep,
):
    """Start an ingest job for the uploaded files. A file with the name of an earlier upload replaces it."""
    access.check(collection)
    s = state.settings
    if len(files) > s.max_upload_files:
        raise InvalidRequestError("too_many_files", f"{len(files)} files; the limit is {s.max_upload_files}", 413)
    names = [_safe_name(f.filename) for f in files]
    for name in names:
        if doc_type_of(Path(name)) is None:
            raise InvalidRequestError("unsupported_type", f"{name}: unsupported file type", 415)
    folder = s.data_dir / "uploads" / collection
    folder.mkdir(parents=True, exist_ok=True)
    limit = int(s.max_upload_mb * 1e6)
    saved = []
    for upload_file, name in zip(files, names):
        dest, size = folder / f".{name}.part", 0
        with open(dest, "wb") as out:
            while block := upload_file.file.read(CHUNK):
                size += len(block)
                if size > limit:
                    out.close()
                    dest.unlink(missing_ok=True)
                    raise InvalidRequestError(
                        "upload_too_large", f"{name} is over the {s.max_upload_mb:g} MB limit", 413
                    )
                out.write(block)
        saved.append(dest.replace(folder / name))
    return state.jobs.submit(collection, saved)


@router.get("/v1/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
def get_job(job_id: str, state: StateDep, access: AccessDep):
    job = state.jobs.get(job_id)
    if job is None or not access.allows(job["collection"]):
        raise InvalidRequestError("job_not_found", f"no job {job_id!r}", 404)
    return job


@router.get("/v1/collections/{collection}/documents", response_model=list[DocumentOut], responses=ERRORS)
def list_documents(collection: CollectionPath, state: StateDep, access: AccessDep):
    access.check(collection)
    state.engine.require_collection(collection)
    index = state.store.index_state(collection)
    return [{"doc_id": d, "source": e["source"], "chunks": len(e["chunks"])} for d, e in sorted(index.items())]


@router.delete("/v1/collections/{collection}/documents/{doc_id:path}", responses=ERRORS)
def delete_document(collection: CollectionPath, doc_id: str, state: StateDep, access: AccessDep) -> dict:
    access.check(collection)
    state.engine.require_collection(collection)
    n = state.store.count(collection, {"doc_id": doc_id})
    if n == 0:
        raise InvalidRequestError("document_not_found", f"no document {doc_id!r} in {collection!r}", 404)
    state.store.delete_where(collection, {"doc_id": doc_id})
    state.store.flush()
    return {"doc_id": doc_id, "chunks_deleted": n}
