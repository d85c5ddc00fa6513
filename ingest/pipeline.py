"""The ingest job: files -> documents -> chunks -> (dense, sparse) vectors -> Qdrant.

Idempotent by construction. A chunk's point id is a hash of its document id, the document's content
hash, its span, and the collection's index settings (ingest/points.py). A document is unchanged exactly when
the set of ids its chunks would get equals the set stored for it; otherwise only the missing chunks are
embedded and written, and then the stored ones that are no longer wanted are deleted (ingest/writing.py). A
job killed at any point leaves a state that the next run repairs the same way, so rerunning always ends where
a clean run does. Which stored documents a file owns, wherever its folder lies now: ingest/identity.py.

Each file is bounded: its text (RAG_MAX_FILE_CHARS), its chunks (RAG_MAX_FILE_CHUNKS) and the time to chunk
and embed it (RAG_FILE_EMBED_TIMEOUT_S, checked between documents and batches). A file over one fails alone
and loses nothing: what it had written is removed again, so its previous version stays whole.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from core.embedding import Embedder
from core.errors import ParseError
from core.settings import Settings
from core.sparse import Bm25Encoder
from core.store import CollectionSpec, Store
from ingest.avg_len import finish_pending, keep_true
from ingest.chunking import Chunk, ChunkerSettings, chunk_text
from ingest.documents import Document
from ingest.identity import Owners, discover, same_owner, shown, sync_scope, views
from ingest.isolation import IsolatedParser
from ingest.points import embed_text, index_key, point_ids
from ingest.report import DiskFull, FileFailed, FileResult, FileStopped, IngestReport, Progress, Stop
from ingest.writing import ChunkWriter, DocWork

log = logging.getLogger("rag.ingest")

BYTES_PER_CHUNK = 16 * 1024  # what writing one chunk may take on disk: ~6.6 KB measured (guides/scaling.md), x2.5


class Ingestor:
    def __init__(self, settings: Settings, store: Store, embedder: Embedder, bm25: Bm25Encoder | None = None):
        self.settings, self.store, self.embedder = settings, store, embedder
        self.bm25 = bm25 or Bm25Encoder.from_settings(settings)
        self.chunker = ChunkerSettings(settings.chunk_max_tokens, settings.chunk_overlap_tokens)
        self._set_bm25(self.bm25)

    def _set_bm25(self, bm25: Bm25Encoder, existing: CollectionSpec | None = None) -> None:
        """Use this BM25 encoder: the collection spec and the point ids (which include the spec) follow it. An
        existing collection's point ids keep the avg_len they were made with, if any (ingest/points.py)."""
        self.bm25 = bm25
        pinned = self.settings.bm25_avg_len is not None or bool(existing and existing.bm25_stats.get("pinned"))
        self.spec = CollectionSpec(
            dense_dim=self.embedder.dim,
            embedding=self.embedder.fingerprint,
            chunker=self.chunker.fingerprint(),
            sparse=bm25.fingerprint,
            ids_avg_len=existing.ids_avg_len if existing is not None else None,
            bm25_stats={**(existing.bm25_stats if existing is not None else {}), "pinned": pinned},
        )
        self._index_key = index_key(self.spec)
        self.writer = ChunkWriter(
            self.store, self.embedder, bm25, self.settings.ingest_batch_chunks, check_space=self.check_space
        )

    def check_space(self, n_chunks: int = 0) -> None:
        """Raise DiskFull when writing `n_chunks` would leave less than RAG_INGEST_MIN_FREE_MB free in the data dir
        of an embedded store. Its files are memory-mapped: a write that finds the disk full kills the process
        (SIGBUS) with no word of why, so the job stops before it, cleanly, with what it wrote whole."""
        floor = self.settings.ingest_min_free_mb * 1e6
        if floor <= 0 or self.settings.qdrant_url:
            return
        folder = Path(self.settings.data_dir).absolute()
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        free = shutil.disk_usage(folder).free
        need = floor + n_chunks * BYTES_PER_CHUNK
        if free < need:
            raise DiskFull(
                f"the disk holding the data dir has {free / 1e6:.1f} MB free; writing {n_chunks} more chunks needs "
                f"{need / 1e6:.1f} MB (RAG_INGEST_MIN_FREE_MB={self.settings.ingest_min_free_mb:g} kept free). What "
                "was written is whole: free some space and run the ingest again to finish"
            )

    def _fit_avg_len(self, collection: str, files: list, parser: "IsolatedParser", report: IngestReport) -> dict:
        """BM25's avg_len: the setting's when set; else the collection's recorded one (a re-encode a stopped job
        left under way finished first), or, for a new collection, the average over the embedded texts of the
        first file that parses (at most 2,000 chunks). Returns the files parsed for it ({path: documents}), so
        they are not parsed twice."""
        existing = self.store.get_spec(collection)
        if existing is not None:
            existing, n = finish_pending(self.store, collection, existing)
            report.chunks_reencoded += n
            recorded = existing.sparse.get("avg_len")
            unset = self.settings.bm25_avg_len is None
            self._set_bm25(self.bm25.with_avg_len(recorded) if unset and recorded is not None else self.bm25, existing)
            return {}
        if self.settings.bm25_avg_len is not None:
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
                texts.extend(embed_text(doc, c) for c in chunk_text(doc.text, self.embedder, self.chunker))
                if len(texts) >= 2000:
                    break
            if texts:
                self._set_bm25(self.bm25.with_avg_len(self.bm25.measure_avg_len(texts)))
                log.info("ingest: BM25 avg_len %.1f measured on %d chunks of %s", self.bm25.avg_len, len(texts), source)
            return {path: docs}
        return {}

    def chunk_ids(self, doc: Document, chunks: list[Chunk]) -> list[str]:
        return point_ids(doc, chunks, self._index_key)

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
        report = IngestReport(collection)
        try:
            self.check_space()  # opening a new collection writes too
            parsed = self._fit_avg_len(collection, files, parser, report)
            self.store.ensure_collection(collection, self.spec)
            state = self.store.index_state(collection)
            owners = Owners(state)
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
        if not report.stopped:  # a stopped job leaves it to the next run
            self._keep_avg_len(collection, report)
        report.points = self.store.count(collection)
        report.seconds = round(time.perf_counter() - t0, 3)
        return report

    def _run_files(
        self, files, collection, state, owners, claimed, protected, report, parser, tick, stop, parsed
    ) -> None:
        """Parse, plan and write file by file; per-file failures go into the report. `parsed`: files already
        parsed ({path: documents})."""
        batch: list[DocWork] = []  # small files' work, written together
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
                    self.writer.write(collection, batch, report, tick)
                    batch, pending = [], 0
                    self.writer.write_file(collection, changed, report, tick, stop, lambda: self._check_time(deadline))
            except (ParseError, FileFailed) as exc:
                log.info("ingest: %s (%s) failed: %s", source, path, exc)
                report.files.append(FileResult(source, "failed", reason=str(exc)))
                protected.add(source)
                continue
            except FileStopped as exc:
                self._stopped(report, files[i:], str(exc))
                break
            tick("documents", len(docs))
            # Documents this file no longer holds go with it (a BEIR corpus that lost a record).
            self.writer.delete_docs(collection, sorted(owned - {d.doc_id for d in docs}), report)
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
                self.writer.write(collection, batch, report, tick)
                batch, pending = [], 0
        self.writer.write(collection, batch, report, tick)

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
            raise FileFailed(
                f"the file holds {chars:,} characters of text, over the limit of {self.settings.max_file_chars:,} "
                "(RAG_MAX_FILE_CHARS)"
            )
        for doc in docs:
            if doc.doc_id in claimed:
                other_source, other_path = claimed[doc.doc_id]
                if other_path == path:
                    continue  # the same file given twice
                if other_source == source:
                    raise FileFailed(
                        f"document id {doc.doc_id!r} was already ingested in this job from another file with the "
                        f"same relative source {source!r} (two folders of the same name?)"
                    )
                raise FileFailed(f"document id {doc.doc_id!r} already belongs to {other_source}")
            stored = state.get(doc.doc_id, {}).get("source")
            if stored is not None and not same_owner(stored, source):
                raise FileFailed(f"document id {doc.doc_id!r} already belongs to {shown(stored)}")
        owned = owners.owned_by(source)
        if owned and not owned & {d.doc_id for d in docs}:
            # Same relative source, not one document in common: another file of the same name (two BEIR
            # corpora both given as corpus.jsonl), not this one edited. Taking it would delete the other's.
            raise FileFailed(
                f"{len(owned)} documents in the collection come from another file with the same relative source "
                f"{source!r}, and this file has none of them; give it inside a folder of another name, or delete "
                "those documents first"
            )
        return owned

    def _plan_file(self, docs: list[Document], state: dict, deadline: float) -> list[DocWork]:
        works, n_chunks, limit = [], 0, self.settings.max_file_chunks
        for doc in docs:
            self._check_time(deadline)
            work = self._plan(doc, state)
            n_chunks += len(work.ids)
            if n_chunks > limit:
                raise FileFailed(f"the file makes more than {limit:,} chunks (RAG_MAX_FILE_CHUNKS)")
            works.append(work)
        return works

    def _check_time(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise FileFailed(
                f"chunking and embedding took longer than {self.settings.file_embed_timeout_s:g} s "
                "(RAG_FILE_EMBED_TIMEOUT_S); the file was abandoned and what it had written removed"
            )

    def _plan(self, doc: Document, state: dict) -> DocWork:
        """What it takes to bring the stored chunks of `doc` to what they should be (maybe nothing)."""
        chunks = chunk_text(doc.text, self.embedder, self.chunker)
        ids = self.chunk_ids(doc, chunks)
        stored = state.get(doc.doc_id, {}).get("chunks", set())
        wanted = set(ids)
        return DocWork(doc, chunks, ids, [i for i, pid in enumerate(ids) if pid not in stored], stored - wanted)

    def _sync(self, collection, paths, state, claimed, protected, report) -> None:
        """Delete documents whose files, under the given paths, are gone (ingest.identity.sync_scope says
        which sources the paths cover)."""
        in_scope = sync_scope(paths)
        gone = [
            d
            for d, e in state.items()
            if d not in claimed and in_scope(e.get("source") or "") and not views(e.get("source") or "") & protected
        ]
        self.writer.delete_docs(collection, gone, report)

    def _keep_avg_len(self, collection: str, report: IngestReport) -> None:
        """Record the collection's true BM25 statistics; re-encode its sparse vectors if avg_len drifted."""
        spec, n = keep_true(self.store, collection, pinned=bool(self.spec.bm25_stats.get("pinned")))
        report.chunks_reencoded += n
        report.bm25_avg_len = spec.sparse["avg_len"]
        if n:
            self._set_bm25(self.bm25.with_avg_len(spec.sparse["avg_len"]), spec)

    def delete_documents(self, collection: str, doc_ids: list[str]) -> int:
        """Delete documents by id (BM25's avg_len follows, as after an ingest). Returns how many chunks went."""
        report = IngestReport(collection)
        self.writer.delete_docs(collection, doc_ids, report)
        self.store.flush()
        existing = self.store.get_spec(collection)
        if existing is not None:
            self._set_bm25(self.bm25, existing)
            self._keep_avg_len(collection, report)
        return report.chunks_deleted
