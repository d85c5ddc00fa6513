"""The ingest job: files -> documents -> chunks -> (dense, sparse) vectors -> Qdrant.

Idempotent by construction. A chunk's point id is a hash of its document id, the document's content
hash, its span, and the collection's index settings. A document is unchanged exactly when the set of
ids its chunks would get equals the set stored for it; otherwise only the missing chunks are embedded
and written, and then the stored ones that are no longer wanted are deleted. A job killed at any point
leaves a state that the next run repairs the same way, so rerunning always ends where a clean run does.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from core.embedding import Embedder
from core.errors import ParseError
from core.settings import Settings
from core.sparse import Bm25Encoder
from core.store import CollectionSpec, PointData, Store
from ingest.chunking import Chunk, ChunkerSettings, chunk_text
from ingest.documents import Document
from ingest.isolation import IsolatedParser
from ingest.parsers import doc_type_of

POINT_NAMESPACE = uuid.UUID("6f1c1f7e-3a52-4c0e-9a57-4f0bd1a8c1d2")

Progress = Callable[[str, int], None]  # (what, how many more): "files", "documents", "chunks"
Stop = Callable[[], "str | None"]  # asked between files and batches: a reason to stop now, or None


@dataclass
class FileResult:
    path: str
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


@dataclass
class _DocWork:
    doc: Document
    chunks: list[Chunk]
    ids: list[str]
    missing: list[int]  # positions of chunks to embed and write
    stale: set[str]  # stored point ids no longer wanted


def embed_text(doc: Document, chunk: Chunk) -> str:
    """What gets embedded (dense and sparse) for a chunk: its title and heading path, then its text."""
    context = [doc.title] if doc.title else []
    context += [h for h in chunk.heading_path if h != doc.title]
    return (" > ".join(context) + "\n\n" + chunk.text) if context else chunk.text


def discover(paths: Iterable[Path]) -> list[tuple[Path, str, str | None]]:
    """(file, document id, reason to skip or None) for every file under the given paths.

    A file's document id is its path relative to the folder given, prefixed by that folder's name
    (`docs/guide.md`), or its name when the file itself was given; so ids do not depend on the
    current directory and golden sets can name them.
    """
    out = []
    for given in paths:
        root = Path(given)
        if root.is_dir():
            base = root.resolve()
            for f in sorted(p for p in base.rglob("*") if p.is_file() or p.is_symlink()):
                rel = f.relative_to(base)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                reason = None if doc_type_of(f) else f"unsupported file type {f.suffix or '(none)'}"
                out.append((f, f"{base.name}/{rel.as_posix()}", reason))
        else:
            out.append((root.absolute(), root.name, None))
    return out


class Ingestor:
    def __init__(self, settings: Settings, store: Store, embedder: Embedder, bm25: Bm25Encoder | None = None):
        self.settings, self.store, self.embedder = settings, store, embedder
        self.bm25 = bm25 or Bm25Encoder.from_settings(settings)
        self.chunker = ChunkerSettings(settings.chunk_max_tokens, settings.chunk_overlap_tokens)
        self.spec = CollectionSpec(
            dense_dim=embedder.dim,
            embedding=embedder.fingerprint,
            chunker=self.chunker.fingerprint(),
            sparse=self.bm25.fingerprint,
        )
        self._index_key = hashlib.sha256(json.dumps(self.spec.to_metadata(), sort_keys=True).encode()).hexdigest()

    def chunk_ids(self, doc: Document, chunks: list[Chunk]) -> list[str]:
        h = doc.content_hash
        return [
            str(
                uuid.uuid5(
                    POINT_NAMESPACE, f"{doc.doc_id}\x1f{h}\x1f{c.position}\x1f{c.start}\x1f{c.end}\x1f{self._index_key}"
                )
            )
            for c in chunks
        ]

    def run(
        self,
        paths: list[Path],
        collection: str,
        sync: bool = False,
        progress: Progress | None = None,
        stop: Stop | None = None,
    ) -> IngestReport:
        """Ingest files and folders into `collection`. Per-file failures are reported, not raised.

        `stop` is asked before each file and each write: when it gives a reason, what was written stays, the
        files not reached are reported skipped with that reason, `report.stopped` holds it, and no --sync runs.
        """
        t0 = time.perf_counter()
        tick = progress or (lambda what, n: None)
        self.store.ensure_collection(collection, self.spec)
        state = self.store.index_state(collection)
        by_source: dict[str, set[str]] = {}
        for doc_id, entry in state.items():
            by_source.setdefault(entry.get("source"), set()).add(doc_id)
        report = IngestReport(collection)
        files = discover(paths)
        tick("files_total", len(files))
        claimed: dict[str, str] = {}  # doc_id -> source, in this job
        protected: set[str] = set()  # sources that failed: their stored documents stay
        parser = IsolatedParser(self.settings.parse_timeout_s, self.settings.parse_memory_mb)
        try:
            self._run_files(files, collection, state, by_source, claimed, protected, report, parser, tick,
                            stop or (lambda: None))
        finally:
            parser.close()
        if sync and not report.stopped:
            self._sync(collection, paths, state, claimed, protected, report)
        self.store.flush()
        report.points = self.store.count(collection)
        report.seconds = round(time.perf_counter() - t0, 3)
        return report

    def _run_files(self, files, collection, state, by_source, claimed, protected, report, parser, tick, stop) -> None:
        """Parse, plan and write file by file; per-file failures go into the report."""
        batch: list[_DocWork] = []
        pending = 0
        for i, (path, doc_id, skip) in enumerate(files):
            if (reason := stop()) is not None:
                report.stopped = reason
                why = f"job stopped: {reason}"
                report.files.extend(FileResult(str(p), "skipped", reason=why) for p, _, _ in files[i:])
                break  # the planned batch (at most ingest_batch_chunks) is still written below
            tick("files", 1)
            source = str(path)
            if skip:
                report.files.append(FileResult(source, "skipped", reason=skip))
                continue
            try:
                docs = parser.parse(path, doc_id, int(self.settings.max_file_mb * 1e6))
                for doc in docs:
                    owner = claimed.get(doc.doc_id) or state.get(doc.doc_id, {}).get("source")
                    if owner is not None and owner != source:
                        raise ParseError(f"document id {doc.doc_id!r} already belongs to {owner}")
            except ParseError as exc:
                report.files.append(FileResult(source, "failed", reason=str(exc)))
                protected.add(source)
                continue
            statuses, n_chunks = [], 0
            for doc in docs:
                claimed[doc.doc_id] = source
                work = self._plan(doc, state)
                n_chunks += len(work.ids)
                tick("documents", 1)
                if not work.missing and not work.stale:
                    statuses.append("unchanged")
                    continue
                statuses.append("updated" if doc.doc_id in state else "added")
                batch.append(work)
                pending += len(work.missing)
                if pending >= self.settings.ingest_batch_chunks:
                    self._write(collection, batch, report, tick)
                    batch, pending = [], 0
            # Documents this file no longer holds go with it (a BEIR corpus that lost a record).
            gone = sorted(by_source.get(source, set()) - {x.doc_id for x in docs})
            self._delete_docs(collection, gone, report)
            for s in ("added", "updated", "unchanged"):
                setattr(report, f"documents_{s}", getattr(report, f"documents_{s}") + statuses.count(s))
            status = (
                "unchanged"
                if all(s == "unchanged" for s in statuses)
                else ("added" if all(s == "added" for s in statuses) else "updated")
            )
            report.files.append(FileResult(source, status, len(docs), n_chunks))
        self._write(collection, batch, report, tick)

    def _plan(self, doc: Document, state: dict) -> _DocWork:
        """What it takes to bring the stored chunks of `doc` to what they should be (maybe nothing)."""
        chunks = chunk_text(doc.text, self.embedder, self.chunker)
        ids = self.chunk_ids(doc, chunks)
        stored = state.get(doc.doc_id, {}).get("chunks", set())
        wanted = set(ids)
        return _DocWork(doc, chunks, ids, [i for i, pid in enumerate(ids) if pid not in stored], stored - wanted)

    def _write(self, collection: str, batch: list[_DocWork], report: IngestReport, tick: Progress) -> None:
        """Embed the missing chunks of a batch of documents, write them, then drop the stale ones."""
        if not batch:
            return
        todo = [(w, w.chunks[i], w.ids[i]) for w in batch for i in w.missing]
        texts = [embed_text(w.doc, c) for w, c, _ in todo]
        vectors = self.embedder.encode(texts)
        points = [
            PointData(pid, vec, self.bm25.embed_document(text), self._payload(w, c, pid))
            for (w, c, pid), vec, text in zip(todo, vectors, texts)
        ]
        self.store.upsert(collection, points)
        stale = [pid for w in batch for pid in w.stale]
        self.store.delete_points(collection, stale)
        report.chunks_embedded += len(points)
        report.chunks_deleted += len(stale)
        tick("chunks", len(points))

    @staticmethod
    def _payload(w: _DocWork, c: Chunk, pid: str) -> dict:
        payload = {
            "doc_id": w.doc.doc_id,
            "chunk_id": pid,
            "source": w.doc.source,
            "doc_type": w.doc.doc_type,
            "title": w.doc.title,
            "text": c.text,
            "start": c.start,
            "end": c.end,
            "position": c.position,
            "n_chunks": len(w.chunks),
            "n_tokens": c.n_tokens,
            "heading_path": list(c.heading_path),
            "content_hash": w.doc.content_hash,
            "metadata": w.doc.metadata,
        }
        page = w.doc.page_at(c.start)
        if page is not None:
            payload["page"] = page
        return payload

    def _delete_docs(self, collection: str, doc_ids: list[str], report: IngestReport) -> None:
        if doc_ids:
            before = self.store.count(collection, {"doc_id": doc_ids})
            self.store.delete_where(collection, {"doc_id": doc_ids})
            report.documents_deleted += len(doc_ids)
            report.chunks_deleted += before

    def _sync(self, collection, paths, state, claimed, protected, report) -> None:
        """Delete documents whose files, under the given paths, are gone."""
        scopes = [Path(p).resolve() for p in paths]

        def in_scope(source: str) -> bool:
            s = Path(source)
            return any(s == root or root in s.parents for root in scopes)

        gone = [
            d
            for d, e in state.items()
            if d not in claimed and e.get("source") not in protected and in_scope(e.get("source") or "")
        ]
        self._delete_docs(collection, gone, report)

    def delete_documents(self, collection: str, doc_ids: list[str]) -> int:
        """Delete documents by id. Returns how many chunks went."""
        report = IngestReport(collection)
        self._delete_docs(collection, doc_ids, report)
        self.store.flush()
        return report.chunks_deleted
