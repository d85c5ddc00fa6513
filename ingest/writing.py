"""The write side of an ingest job: embed the chunks a plan says are missing, write them, then delete the
stored ones no longer wanted; a big file that cannot finish is rolled back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.embedding import Embedder
from core.sparse import Bm25Encoder
from core.store import PointData, Store
from ingest.chunking import Chunk
from ingest.documents import Document
from ingest.points import BM25_LEN, embed_text, payload
from ingest.report import FileFailed, FileStopped, IngestReport, Progress, Stop


@dataclass
class DocWork:
    doc: Document
    chunks: list[Chunk]
    ids: list[str]
    missing: list[int]  # positions of chunks to embed and write
    stale: set[str]  # stored point ids no longer wanted


class ChunkWriter:
    """Writes planned documents into a store with one embedder and one BM25 encoder."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        bm25: Bm25Encoder,
        batch_chunks: int,
        check_space: Callable[[int], None] | None = None,
    ):
        self.store, self.embedder, self.bm25, self.batch_chunks = store, embedder, bm25, batch_chunks
        self.check_space = check_space or (lambda n_chunks: None)  # raises DiskFull before a write that won't fit

    def write(self, collection: str, batch: list[DocWork], report: IngestReport, tick: Progress) -> None:
        """Embed the missing chunks of a batch of documents, write them, then drop the stale ones."""
        if not batch:
            return
        self.upsert(collection, [(w, i) for w in batch for i in w.missing], report, tick)
        self.delete_stale(collection, batch, report)

    def write_file(
        self,
        collection: str,
        works: list[DocWork],
        report: IngestReport,
        tick: Progress,
        stop: Stop,
        check_time: Callable[[], None],
    ) -> None:
        """Write one big file's missing chunks in batches, asking `stop` and the clock before each. A file that
        cannot finish is rolled back: the chunks it wrote go, its stale ones stay, so its last version is whole."""
        todo = [(w, i) for w in works for i in w.missing]
        size, written = self.batch_chunks, []
        try:
            for k in range(0, len(todo), size):
                if (reason := stop()) is not None:
                    raise FileStopped(reason)
                check_time()
                written += self.upsert(collection, todo[k : k + size], report, tick)
        except (FileStopped, FileFailed):
            self.store.delete_points(collection, written)
            report.chunks_embedded -= len(written)
            raise
        self.delete_stale(collection, works, report)

    def upsert(self, collection: str, todo: list[tuple[DocWork, int]], report, tick) -> list[str]:
        self.check_space(len(todo))
        texts = [embed_text(w.doc, w.chunks[i]) for w, i in todo]
        vectors = self.embedder.encode(texts)
        points = [
            PointData(
                w.ids[i],
                vec,
                self.bm25.embed_document(text),
                # The chunk's BM25 length goes with it: the collection's average is kept from these (ingest/avg_len.py).
                {**payload(w.doc, w.chunks[i], w.ids[i], len(w.chunks)), BM25_LEN: self.bm25.length(text)},
            )
            for (w, i), vec, text in zip(todo, vectors, texts)
        ]
        self.store.upsert(collection, points)
        report.chunks_embedded += len(points)
        tick("chunks", len(points))
        return [p.id for p in points]

    def delete_stale(self, collection: str, works: list[DocWork], report: IngestReport) -> None:
        stale = [pid for w in works for pid in w.stale]
        self.store.delete_points(collection, stale)
        report.chunks_deleted += len(stale)

    def delete_docs(self, collection: str, doc_ids: list[str], report: IngestReport) -> None:
        if doc_ids:
            before = self.store.count(collection, {"doc_id": doc_ids})
            self.store.delete_where(collection, {"doc_id": doc_ids})
            report.documents_deleted += len(doc_ids)
            report.chunks_deleted += before
