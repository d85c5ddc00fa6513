"""What an ingest job reports: each file's outcome, the counts, and why it stopped; and the two ways one file
ends early (it fails alone, or the job was asked to stop while it was being written)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from core.errors import RagError

Progress = Callable[[str, int], None]  # (what, how many more): "files", "documents", "chunks"
Stop = Callable[[], "str | None"]  # asked between files and batches: a reason to stop now, or None


@dataclass
class FileResult:
    path: str  # the file's relative source (`docs/guide.md`), never a server path
    status: str  # added | updated | unchanged | failed | skipped
    documents: int = 0
    chunks: int = 0
    reason: str | None = None


@dataclass
class IngestReport:
    collection: str
    files: list[FileResult] = field(default_factory=list)
    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    documents_deleted: int = 0
    chunks_embedded: int = 0
    chunks_deleted: int = 0
    chunks_reencoded: int = 0  # sparse vectors rewritten because BM25's avg_len drifted (ingest/avg_len.py)
    bm25_avg_len: float | None = None  # the collection's avg_len as the job left it
    points: int = 0
    seconds: float = 0.0
    stopped: str | None = None  # why the job stopped before its last file (cancelled, over a limit, shutdown)

    @property
    def status(self) -> str:
        """succeeded; failed when every file that was tried failed; partial when some failed or the job stopped."""
        tried = [f for f in self.files if f.status != "skipped"]
        if tried and all(f.status == "failed" for f in tried):
            return "failed"
        if self.stopped or any(f.status == "failed" for f in tried):
            return "partial"
        return "succeeded"

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["summary"] = {s: self.count(s) for s in ("added", "updated", "unchanged", "failed", "skipped")}
        d["summary"]["seen"] = len(self.files)
        d["status"] = self.status
        return d


class FileFailed(Exception):
    """This file fails alone, for this reason; the job goes on."""


class FileStopped(Exception):
    """The job was asked to stop while this file was being written; its writes were rolled back."""


class DiskFull(RagError):
    """Too little free space in the data dir to write the next batch (RAG_INGEST_MIN_FREE_MB): the job stops
    before the write, with what it wrote whole; a rerun with space again ends where a clean run does."""

    code = "disk_full"
    http_status = 507
