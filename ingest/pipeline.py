"""The ingest job: files -> documents -> chunks -> (dense, sparse) vectors -> Qdrant.

Idempotent by construction. A chunk's point id is a hash of its document id, the document's content
hash, its span, and the collection's index settings. A document is unchanged exactly when the set of
ids its chunks would get equals the set stored for it; otherwise only the missing chunks are embedded
and written, and then the stored ones that are no longer wanted are deleted. A job killed at any point
leaves a state that the next run repairs the same way, so rerunning always ends where a clean run does.

Identity is relative. A file's `source` is its path under the folder given, named by that folder's base
name (`docs/guide.md`), or its name when the file itself was given; its document's id is the same, and a
BEIR corpus's records keep their `_id` and have the corpus file's source as owner. So a folder moved, or
mounted elsewhere in a container, re-ingests as unchanged, and no server path is stored: absolute paths go
to the log only. Collections written before this hold absolute sources; an absolute source that ends with
a file's relative source counts as the same owner (see `same_owner`), so they re-ingest unchanged too.

Each file is bounded: its text (RAG_MAX_FILE_CHARS), its chunks (RAG_MAX_FILE_CHUNKS) and the time to chunk
and embed it (RAG_FILE_EMBED_TIMEOUT_S, checked between documents and batches). A file over one fails alone
and loses nothing: what it had written is removed again, so its previous version stays whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
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

log = logging.getLogger("rag.ingest")

POINT_NAMESPACE = uuid.UUID("6f1c1f7e-3a52-4c0e-9a57-4f0bd1a8c1d2")

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
    """(file, source, reason to skip or None) for every file under the given paths.

    A file's source is its path relative to the folder given, prefixed by that folder's name
    (`docs/guide.md`), or its name when the file itself was given. It is the id of the file's document (a
    BEIR corpus's records keep their own), so ids depend neither on the current directory nor on where the
    folder lies, and golden sets can name them.
    """
    out = []
    for given in paths:
        root = Path(given)
        if root.is_dir():
            base = root.resolve()
            name = base.name or "root"  # "/" has no name; a source must never look absolute
            for f in sorted(p for p in base.rglob("*") if p.is_file() or p.is_symlink()):
                rel = f.relative_to(base)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                reason = None if doc_type_of(f) else f"unsupported file type {f.suffix or '(none)'}"
                out.append((f, f"{name}/{rel.as_posix()}", reason))
        else:
            out.append((root.absolute(), root.name, None))
    return out


def _is_absolute(source: str) -> bool:
    return source.startswith("/")


def _views(source: str) -> set[str]:
    """The relative sources a stored source stands for: itself, or for an absolute one (written before
    identity became relative) each of its trailing paths (`/srv/a/docs/x.md` -> `x.md`, `docs/x.md`, ...)."""
    if not _is_absolute(source):
        return {source}
    parts = PurePosixPath(source).parts[1:]
    return {"/".join(parts[k:]) for k in range(len(parts))}


def same_owner(stored: str, source: str) -> bool:
    """Whether a stored document's source is the file with relative source `source`: equal, or an absolute
    source of an older version that ends with it (the same folder, wherever it lay then)."""
    return stored == source or (_is_absolute(stored) and stored.endswith("/" + source))


def _shown(source: str) -> str:
    """A stored source as a report may show it: an old absolute one by its last two parts only."""
    if not _is_absolute(source):
        return source
    return ".../" + "/".join(PurePosixPath(source).parts[-2:])


class _FileFailed(Exception):
    """This file fails alone, for this reason; the job goes on."""


class _FileStopped(Exception):
    """The job was asked to stop while this file was being written; its writes were rolled back."""


class _Owners:
    """The collection's documents by owning source, relative or (from older versions) absolute."""

    def __init__(self, state: dict[str, dict]):
        self.by_source: dict[str, set[str]] = {}
        for doc_id, entry in state.items():
            self.by_source.setdefault(entry.get("source") or "", set()).add(doc_id)
        self.legacy: dict[str, set[str]] = {}  # a relative view -> absolute stored sources that end with it
        for src in self.by_source:
            if _is_absolute(src):
                for view in _views(src):
                    self.legacy.setdefault(view, set()).add(src)

    def owned_by(self, source: str) -> set[str]:
        out = set(self.by_source.get(source, ()))
        for src in self.legacy.get(source, ()):
            out |= self.by_source[src]
        return out


class Ingestor:
    def __init__(self, settings: Settings, store: Store, embedder: Embedder, bm25: Bm25Encoder | None = None):
        self.settings, self.store, self.embedder = settings, store, embedder
        self.bm25 = bm25 or Bm25Encoder.from_settings(settings)
        self.chunker = ChunkerSettings(settings.chunk_max_tokens, settings.chunk_overlap_tokens)
        self._set_bm25(self.bm25)

    def _set_bm25(self, bm25: Bm25Encoder) -> None:
        """Use this BM25 encoder: the collection spec and the point ids (which include the spec) follow it."""
        self.bm25 = bm25
        self.spec = CollectionSpec(
            dense_dim=self.embedder.dim,
            embedding=self.embedder.fingerprint,
            chunker=self.chunker.fingerprint(),
            sparse=bm25.fingerprint,
        )
        self._index_key = hashlib.sha256(json.dumps(self.spec.to_metadata(), sort_keys=True).encode()).hexdigest()

    def _fit_avg_len(self, collection: str, files: list, parser: "IsolatedParser") -> dict:
        """BM25's avg_len when the settings leave it unset: the collection's recorded one, or, for a new
        collection, the average over the chunks of the first file that parses (at most 2,000 chunks). Returns
        the files parsed for it ({path: documents}), so they are not parsed twice."""
        if self.settings.bm25_avg_len is not None:
            return {}
        existing = self.store.get_spec(collection)
        if existing is not None:
            recorded = existing.sparse.get("avg_len")
            if recorded is not None:
                self._set_bm25(self.bm25.with_avg_len(recorded))
            return {}
        for path, source, skip in files:
            if skip:
                continue
            try:
                docs = parser.parse(path, source, int(self.settings.max_file_mb * 1e6))
            except ParseError:
                continue  # it fails again, alone and with its reason, in the run
            texts = []
            for doc in docs:
                texts.extend(c.text for c in chunk_text(doc.text, self.embedder, self.chunker))
                if len(texts) >= 2000:
                    break
            if texts:
                self._set_bm25(self.bm25.with_avg_len(self.bm25.measure_avg_len(texts)))
                log.info("ingest: BM25 avg_len %.1f measured on %d chunks of %s", self.bm25.avg_len, len(texts), source)
            return {path: docs}
        return {}

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

        `stop` is asked before each file and each write: when it gives a reason, what was written stays (but
        a file caught halfway is rolled back), the files not reached are reported skipped with that reason,
        `report.stopped` holds it, and no --sync runs.
        """
        t0 = time.perf_counter()
        tick = progress or (lambda what, n: None)
        files = discover(paths)
        parser = IsolatedParser(self.settings.parse_timeout_s, self.settings.parse_memory_mb)
        try:
            parsed = self._fit_avg_len(collection, files, parser)
            self.store.ensure_collection(collection, self.spec)
            state = self.store.index_state(collection)
            owners = _Owners(state)
            report = IngestReport(collection)
            tick("files_total", len(files))
            claimed: dict[str, tuple[str, Path]] = {}  # doc_id -> (source, file), in this job
            protected: set[str] = set()  # sources that failed: their stored documents stay
            self._run_files(
                files,
                collection,
                state,
                owners,
                claimed,
                protected,
                report,
                parser,
                tick,
                stop or (lambda: None),
                parsed,
            )
        finally:
            parser.close()
        if sync and not report.stopped:
            self._sync(collection, paths, state, claimed, protected, report)
        self.store.flush()
        report.points = self.store.count(collection)
        report.seconds = round(time.perf_counter() - t0, 3)
        return report

    def _run_files(
        self, files, collection, state, owners, claimed, protected, report, parser, tick, stop, parsed
    ) -> None:
        """Parse, plan and write file by file; per-file failures go into the report. `parsed`: files already
        parsed ({path: documents})."""
        batch: list[_DocWork] = []  # small files' work, written together
        pending = 0
        for i, (path, source, skip) in enumerate(files):
            if (reason := stop()) is not None:
                self._stopped(report, files[i:], reason)
                break  # the planned batch (at most ingest_batch_chunks) is still written below
            tick("files", 1)
            if skip:
                report.files.append(FileResult(source, "skipped", reason=skip))
                continue
            try:
                docs = parsed.pop(path, None) or parser.parse(path, source, int(self.settings.max_file_mb * 1e6))
                deadline = time.monotonic() + self.settings.file_embed_timeout_s
                owned = self._check_file(path, source, docs, state, owners, claimed)
                for doc in docs:
                    claimed[doc.doc_id] = (source, path)
                works = self._plan_file(docs, state, deadline)
                changed = [w for w in works if w.missing or w.stale]
                n_missing = sum(len(w.missing) for w in changed)
                if pending + n_missing <= self.settings.ingest_batch_chunks:
                    batch.extend(changed)
                    pending += n_missing
                else:  # a big file: its own batches, bounded in time, and undone if it cannot finish
                    self._write(collection, batch, report, tick)
                    batch, pending = [], 0
                    self._write_file(collection, changed, report, tick, stop, deadline)
            except (ParseError, _FileFailed) as exc:
                log.info("ingest: %s (%s) failed: %s", source, path, exc)
                report.files.append(FileResult(source, "failed", reason=str(exc)))
                protected.add(source)
                continue
            except _FileStopped as exc:
                self._stopped(report, files[i:], str(exc))
                break
            tick("documents", len(docs))
            # Documents this file no longer holds go with it (a BEIR corpus that lost a record).
            self._delete_docs(collection, sorted(owned - {d.doc_id for d in docs}), report)
            statuses = [
                "unchanged" if not (w.missing or w.stale) else ("updated" if w.doc.doc_id in state else "added")
                for w in works
            ]
            for st in ("added", "updated", "unchanged"):
                setattr(report, f"documents_{st}", getattr(report, f"documents_{st}") + statuses.count(st))
            status = (
                "unchanged"
                if all(st == "unchanged" for st in statuses)
                else ("added" if all(st == "added" for st in statuses) else "updated")
            )
            report.files.append(FileResult(source, status, len(docs), sum(len(w.ids) for w in works)))
            if pending >= self.settings.ingest_batch_chunks:
                self._write(collection, batch, report, tick)
                batch, pending = [], 0
        self._write(collection, batch, report, tick)

    @staticmethod
    def _stopped(report: IngestReport, rest: list, reason: str) -> None:
        report.stopped = reason
        why = f"job stopped: {reason}"
        report.files.extend(FileResult(source, "skipped", reason=why) for _, source, _ in rest)

    def _check_file(self, path, source, docs, state, owners, claimed) -> set[str]:
        """Refuse a file over the text limit or whose documents belong to another file; returns the ids of
        the stored documents this file owns."""
        chars = sum(len(d.text) for d in docs)
        if chars > self.settings.max_file_chars:
            raise _FileFailed(
                f"the file holds {chars:,} characters of text, over the limit of {self.settings.max_file_chars:,} "
                "(RAG_MAX_FILE_CHARS)"
            )
        for doc in docs:
            if doc.doc_id in claimed:
                other_source, other_path = claimed[doc.doc_id]
                if other_path == path:
                    continue  # the same file given twice
                if other_source == source:
                    raise _FileFailed(
                        f"document id {doc.doc_id!r} was already ingested in this job from another file with the "
                        f"same relative source {source!r} (two folders of the same name?)"
                    )
                raise _FileFailed(f"document id {doc.doc_id!r} already belongs to {other_source}")
            stored = state.get(doc.doc_id, {}).get("source")
            if stored is not None and not same_owner(stored, source):
                raise _FileFailed(f"document id {doc.doc_id!r} already belongs to {_shown(stored)}")
        owned = owners.owned_by(source)
        if owned and not owned & {d.doc_id for d in docs}:
            # Same relative source, not one document in common: another file of the same name (two BEIR
            # corpora both given as corpus.jsonl), not this one edited. Taking it would delete the other's.
            raise _FileFailed(
                f"{len(owned)} documents in the collection come from another file with the same relative source "
                f"{source!r}, and this file has none of them; give it inside a folder of another name, or delete "
                "those documents first"
            )
        return owned

    def _plan_file(self, docs: list[Document], state: dict, deadline: float) -> list[_DocWork]:
        works, n_chunks, limit = [], 0, self.settings.max_file_chunks
        for doc in docs:
            self._check_time(deadline)
            work = self._plan(doc, state)
            n_chunks += len(work.ids)
            if n_chunks > limit:
                raise _FileFailed(f"the file makes more than {limit:,} chunks (RAG_MAX_FILE_CHUNKS)")
            works.append(work)
        return works

    def _check_time(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise _FileFailed(
                f"chunking and embedding took longer than {self.settings.file_embed_timeout_s:g} s "
                "(RAG_FILE_EMBED_TIMEOUT_S); the file was abandoned and what it had written removed"
            )

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
        self._upsert(collection, [(w, i) for w in batch for i in w.missing], report, tick)
        self._delete_stale(collection, batch, report)

    def _write_file(self, collection, works, report, tick, stop, deadline) -> None:
        """Write one big file's missing chunks in batches, asking `stop` and the clock before each. A file that
        cannot finish is rolled back: the chunks it wrote go, its stale ones stay, so its last version is whole."""
        todo = [(w, i) for w in works for i in w.missing]
        size, written = self.settings.ingest_batch_chunks, []
        try:
            for k in range(0, len(todo), size):
                if (reason := stop()) is not None:
                    raise _FileStopped(reason)
                self._check_time(deadline)
                written += self._upsert(collection, todo[k : k + size], report, tick)
        except (_FileStopped, _FileFailed):
            self.store.delete_points(collection, written)
            report.chunks_embedded -= len(written)
            raise
        self._delete_stale(collection, works, report)

    def _upsert(self, collection: str, todo: list[tuple[_DocWork, int]], report, tick) -> list[str]:
        texts = [embed_text(w.doc, w.chunks[i]) for w, i in todo]
        vectors = self.embedder.encode(texts)
        points = [
            PointData(w.ids[i], vec, self.bm25.embed_document(text), self._payload(w, w.chunks[i], w.ids[i]))
            for (w, i), vec, text in zip(todo, vectors, texts)
        ]
        self.store.upsert(collection, points)
        report.chunks_embedded += len(points)
        tick("chunks", len(points))
        return [p.id for p in points]

    def _delete_stale(self, collection: str, works: list[_DocWork], report: IngestReport) -> None:
        stale = [pid for w in works for pid in w.stale]
        self.store.delete_points(collection, stale)
        report.chunks_deleted += len(stale)

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
        """Delete documents whose files, under the given paths, are gone.

        Scope is by relative source: a folder `x/docs` covers the sources `docs/...`, a file `x/c.jsonl` the
        source `c.jsonl`, wherever they lie now. Absolute sources of older versions are in scope when under
        the folder given or when one of their trailing paths is (the folder moved since).
        """
        scopes = []
        for p in paths:
            given = Path(p)
            if given.is_dir():
                resolved = given.resolve()
                scopes.append((resolved.name or "root", True, resolved))
            else:
                scopes.append((given.name, False, given.absolute()))

        def in_scope(source: str) -> bool:
            for name, is_dir, root in scopes:
                if is_dir:
                    if source.startswith(name + "/"):
                        return True
                    if _is_absolute(source) and (f"/{name}/" in source or root in Path(source).parents):
                        return True
                elif source == name or (_is_absolute(source) and source.endswith("/" + name)):
                    return True
            return False

        gone = [
            d
            for d, e in state.items()
            if d not in claimed and in_scope(e.get("source") or "") and not _views(e.get("source") or "") & protected
        ]
        self._delete_docs(collection, gone, report)

    def delete_documents(self, collection: str, doc_ids: list[str]) -> int:
        """Delete documents by id. Returns how many chunks went."""
        report = IngestReport(collection)
        self._delete_docs(collection, doc_ids, report)
        self.store.flush()
        return report.chunks_deleted
