"""Collections, documents and ingest jobs: upload files to start a job, poll or cancel it, list and delete
documents."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable

from fastapi import APIRouter, Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from core.errors import Forbidden, InvalidRequestError, RagError
from ingest.parsers import doc_type_of
from service.deps import AccessDep, OwnerDep, StateDep, job_visible
from service.errors import ERRORS
from service.jobs.context import JobNotFound, scrub
from service.schemas.common import CollectionPath
from service.schemas.documents import CollectionOut, DocumentDeleted, DocumentOut
from service.schemas.jobs import JobOut

router = APIRouter(tags=["documents"])
CHUNK = 1 << 20


# Uploads are read from the request stream by hand: each file goes straight into the job's own staging folder,
# and every limit is checked as the bytes arrive (nothing is spooled elsewhere first).
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Documents to ingest. A file name may hold a relative path "
                            "(`2023/summary.txt`): it is kept, and is the document id.",
                        }
                    },
                }
            }
        },
    }
}
DRAIN_LIMIT = 16 << 20  # after a refusal, read at most this much more of the body so the client gets the answer


def upload_name(raw: str | None) -> str:
    """The upload's relative path, made safe: no `..`, no leading `/`, no hidden parts, tame characters."""
    parts = [re.sub(r"[^\w.\- ]", "_", p).strip(" .") for p in re.split(r"[\\/]+", raw or "")]
    parts = [p for p in parts if p]
    name = "/".join(parts)
    if not parts or len(parts) > 16 or len(name.encode()) > 1024 or any(len(p.encode()) > 255 for p in parts):
        raise InvalidRequestError("invalid_filename", f"unusable file name {(raw or '')[:100]!r}")
    return name


class _Receiver:
    """python-multipart callbacks that write the `files` parts of one request into `folder`."""

    def __init__(self, folder: Path, settings, budget: int, counted: Callable[[int], None]):
        self.folder, self.counted = folder, counted
        self.file_limit = int(settings.max_upload_mb * 1e6)
        self.request_limit = int(settings.max_upload_request_mb * 1e6)
        self.key_limit_mb, self.budget = settings.max_upload_key_mb, budget
        self.max_files, self.settings = settings.max_upload_files, settings
        self.names: list[str] = []
        self.total = 0
        self._dirs: set[str] = set()
        self._out = None
        self._size = 0
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, a, b: setattr(self, "_field", self._field + d[a:b]),
            "on_header_value": lambda d, a, b: setattr(self, "_value", self._value + d[a:b]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self.close,
        }

    def _begin(self) -> None:
        self._headers, self._out, self._size = {}, None, 0

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, opts = parse_options_header(self._headers.get(b"content-disposition", b""))
        if opts.get(b"name") != b"files":
            return  # another field: its bytes count toward the request's total, and are dropped
        if b"filename" not in opts:
            raise InvalidRequestError("invalid_request", "files: each part must be a file", 422)
        if len(self.names) >= self.max_files:
            raise InvalidRequestError("too_many_files", f"more than {self.max_files} files; that is the limit", 413)
        name = upload_name(opts[b"filename"].decode("utf-8", "replace"))
        if doc_type_of(Path(name)) is None:
            raise InvalidRequestError("unsupported_type", f"{name}: unsupported file type", 415)
        parents = {"/".join(name.split("/")[:i]) for i in range(1, name.count("/") + 1)}
        if name in self.names or name in self._dirs or parents & set(self.names):
            raise InvalidRequestError(
                "duplicate_file", f"{name}: two files in one request have this name (or it is also a folder)", 400
            )
        self.names.append(name)
        self._dirs |= parents
        dest = self.folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(dest, "xb")

    def _data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        self._size += n
        self.total += n
        self.counted(n)
        if self.total > self.request_limit:
            raise InvalidRequestError(
                "upload_too_large",
                f"the files of one request are over the {self.settings.max_upload_request_mb:g} MB limit",
                413,
            )
        if self.total > self.budget:
            raise InvalidRequestError(
                "upload_quota_exceeded",
                f"this API key's waiting and running uploads would be over the {self.key_limit_mb:g} MB limit",
                413,
            )
        if self._out is not None:
            if self._size > self.file_limit:
                raise InvalidRequestError(
                    "upload_too_large", f"{self.names[-1]} is over the {self.settings.max_upload_mb:g} MB limit", 413
                )
            self._out.write(data[start:end])

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


@router.get("/v1/collections", response_model=list[CollectionOut], responses=ERRORS)
def list_collections(state: StateDep, access: AccessDep) -> list[dict]:
    return [
        {"name": n, "points": state.store.count(n), "spec": state.store.get_spec(n).to_metadata()}
        for n in state.store.list_collections()
        if access.allows(n)
    ]


@router.post(
    "/v1/collections/{collection}/documents",
    status_code=202,
    response_model=JobOut,
    responses=ERRORS,
    openapi_extra=UPLOAD_BODY,
)
async def upload(collection: CollectionPath, request: Request, state: StateDep, access: AccessDep, owner: OwnerDep):
    """Start an ingest job for the uploaded files (multipart, field `files`). A file name's relative path is
    kept (`2023/summary.txt` and `2024/summary.txt` are two documents); the same name twice in one request is
    refused. The uploads are deleted when the job ends (the documents are in the store)."""
    access.check(collection)
    s, jobs = state.settings, state.jobs
    kind, opts = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not opts.get(b"boundary"):
        raise InvalidRequestError("invalid_request", "files: send the files as multipart/form-data", 422)
    await run_in_threadpool(jobs.check_queue, owner)
    budget = await run_in_threadpool(jobs.upload_budget, owner)
    declared = request.headers.get("content-length", "")
    framing = 64 * 1024 + 1024 * s.max_upload_files
    if declared.isdigit() and int(declared) > s.max_upload_request_mb * 1e6 + framing:
        raise InvalidRequestError(
            "upload_too_large", f"the files of one request are over the {s.max_upload_request_mb:g} MB limit", 413
        )
    job_id = jobs.new_id()
    folder = jobs.staging_dir(job_id)
    folder.mkdir(parents=True)
    receiver = _Receiver(folder, s, budget, lambda n: jobs.receiving(owner, n))
    parser = MultipartParser(opts[b"boundary"], receiver.callbacks())
    stream, submitted = request.stream(), False
    try:
        try:
            buf = bytearray()
            async for chunk in stream:
                buf += chunk
                if len(buf) >= CHUNK:
                    await run_in_threadpool(parser.write, bytes(buf))
                    buf.clear()
            await run_in_threadpool(parser.write, bytes(buf))
            parser.finalize()
            receiver.close()
        except ClientDisconnect:
            raise InvalidRequestError("upload_incomplete", "the upload was cut off before its end") from None
        except MultipartParseError:
            raise InvalidRequestError("invalid_multipart", "the multipart body could not be read") from None
        except RagError:
            drained = 0  # let the client finish sending, within reason, so it reads the refusal
            try:
                async for chunk in stream:
                    drained += len(chunk)
                    if drained > DRAIN_LIMIT:
                        break
            except ClientDisconnect:
                pass
            raise
        if not receiver.names:
            raise InvalidRequestError("invalid_request", "files: Field required", 422)
        progress = {"files": 0, "files_total": len(receiver.names), "documents": 0, "chunks": 0}
        job = await run_in_threadpool(
            lambda: jobs.submit(
                "ingest", collection, owner, job_id=job_id, files=receiver.names, upload_bytes=receiver.total,
                progress=progress,
            )
        )  # fmt: skip
        submitted = True
        return job
    finally:
        receiver.close()
        jobs.receiving(owner, -receiver.total)
        if not submitted:
            shutil.rmtree(folder, ignore_errors=True)


@router.get("/v1/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
def get_job(job_id: str, state: StateDep, access: AccessDep):
    """An ingest job or an audit: status, progress, the report when it has ended."""
    job = state.jobs.get(job_id)
    if job is None or not job_visible(job, access):
        raise JobNotFound(job_id)
    return job


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobOut, responses=ERRORS)
def cancel_job(job_id: str, state: StateDep, access: AccessDep, owner: OwnerDep):
    """Cancel a job: a queued one at once, a running one at its next file or batch (it ends `cancelled`; what it
    wrote stays). Only the API key that submitted it, or an admin key (`*`), may."""
    job = state.jobs.get(job_id)
    if job is None or not job_visible(job, access):
        raise JobNotFound(job_id)
    admin = access.collections is None or "*" in access.collections
    if not admin and state.jobs.owner(job_id) != owner:
        raise Forbidden("only the API key that submitted a job (or an admin key) can cancel it")
    return state.jobs.cancel(job_id)


@router.get("/v1/collections/{collection}/documents", response_model=list[DocumentOut], responses=ERRORS)
def list_documents(collection: CollectionPath, state: StateDep, access: AccessDep):
    access.check(collection)
    state.engine.require_collection(collection)
    index = state.store.index_state(collection)
    roots = [state.jobs.uploads / collection, state.jobs.uploads]  # an upload's source: its upload name
    return [
        {"doc_id": d, "source": scrub(e["source"], roots), "chunks": len(e["chunks"])} for d, e in sorted(index.items())
    ]


@router.delete("/v1/collections/{collection}/documents/{doc_id:path}", response_model=DocumentDeleted, responses=ERRORS)
def delete_document(collection: CollectionPath, doc_id: str, state: StateDep, access: AccessDep) -> dict:
    access.check(collection)
    state.engine.require_collection(collection)
    n = state.store.count(collection, {"doc_id": doc_id})
    if n == 0:
        raise InvalidRequestError("document_not_found", f"no document {doc_id!r} in {collection!r}", 404)
    state.store.delete_where(collection, {"doc_id": doc_id})
    state.store.flush()
    return {"doc_id": doc_id, "chunks_deleted": n}
