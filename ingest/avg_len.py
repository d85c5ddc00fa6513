"""BM25's avg_len kept true as a collection grows and shrinks, whatever was ingested first (issue 18).

BM25 divides each chunk's length by the collection's average length (`avg_len`), and that is baked into the
stored sparse vectors. A new collection measures it on its first file (ingest/pipeline.py); after every ingest
run (and Ingestor.delete_documents) `keep_true` measures the true average of every stored chunk from the
lengths written with them (payload `bm25_len`; chunks written before lengths were kept get theirs from their
stored text, once), and records it in the collection's spec as `bm25_stats` {n_chunks, total_len}. When the
recorded avg_len is off the true one by more than DRIFT_BOUND (relative), every stored chunk's sparse vector is
re-encoded from its stored text (dense vectors and point ids untouched) and the new avg_len recorded. A
setting (RAG_BM25_AVG_LEN) pins it: such a collection is marked `pinned` and never re-encoded.

Crash-safe and idempotent: `pending_avg_len` is recorded before the first vector is rewritten and removed
(with the new avg_len recorded) only after the last one is durable. A job killed in between leaves a mix of
old and new vectors; the next ingest run finishes the re-encode before it writes anything (`finish_pending`),
and re-encoding a chunk twice gives the same vector. Queries read a mix of old and new vectors while a
re-encode runs (BM25 only; a query's own weights do not depend on avg_len).
"""

from __future__ import annotations

import logging

from core.sparse import Bm25Encoder
from core.store import CollectionSpec, Store
from ingest.points import BM25_LEN, stored_embed_text

log = logging.getLogger("rag.ingest")

# The relative drift |recorded - true| / true past which the stored vectors are re-encoded. Measured by
# `python benchmarks/bm25_ingest_order.py drift` (all 5,183 SciFact abstracts, 11,614 chunks, true average 78.0):
# with avg_len set to the true average times (1 + r), sparse nDCG@10 on the train split stays within 0.002 of
# its value at the true average for |r| <= 0.05 and moves by 0.0021 at r = +0.10 (0.6979 -> 0.7000; test
# 0.6918 -> 0.6919). The curve is flat near the truth (train within 0.004 from r = -0.2 to +1.5) and falls far
# from it (r = -0.6: 0.6856 train, 0.6836 test; the case, 7.0 recorded for a true 59, is r = -0.88).
DRIFT_BOUND = 0.05
PAGE = 1000  # chunks read and rewritten at a time


def drift(recorded: float, true: float) -> float:
    """How far the recorded avg_len is off the true average, relative to the true one."""
    return abs(recorded - true) / true if true > 0 else 0.0


def _lengths(store: Store, collection: str, bm25: Bm25Encoder) -> tuple[list[int], list[tuple[str, int, str]]]:
    """Every stored chunk's BM25 length; and for chunks stored without one, (id, length, embedded text)."""
    known, unknown = [], []
    hits = store.scroll(collection, [BM25_LEN])
    missing = [h.id for h in hits if not isinstance(h.payload.get(BM25_LEN), int)]
    known = [h.payload[BM25_LEN] for h in hits if isinstance(h.payload.get(BM25_LEN), int)]
    for k in range(0, len(missing), PAGE):
        for h in store.get_points(collection, missing[k : k + PAGE], ["title", "heading_path", "text"]):
            text = stored_embed_text(h.payload)
            unknown.append((h.id, bm25.length(text), text))
    return known, unknown


def encoder(spec: CollectionSpec, avg_len: float | None = None) -> Bm25Encoder:
    """The collection's BM25 encoder (its recorded k, b and language) with this avg_len (default: its own)."""
    sp = spec.sparse
    return Bm25Encoder(sp["k"], sp["b"], sp["avg_len"] if avg_len is None else avg_len, sp["language"])


def keep_true(store: Store, collection: str, pinned: bool) -> tuple[CollectionSpec, int]:
    """Measure the collection's true average length and record it with the spec; re-encode every chunk when the
    recorded avg_len drifted past DRIFT_BOUND and is not pinned. Returns the spec as recorded and how many
    chunks were re-encoded."""
    spec = store.get_spec(collection)
    bm25 = encoder(spec)
    known, unknown = _lengths(store, collection, bm25)
    n, total = len(known) + len(unknown), sum(known) + sum(length for _, length, _ in unknown)
    stats = {**spec.bm25_stats, "n_chunks": n, "total_len": total, "pinned": pinned}
    recorded = spec.sparse["avg_len"]
    if n and not pinned and drift(recorded, total / n) > DRIFT_BOUND:
        true = round(total / n, 1)
        log.info(
            "ingest: BM25 avg_len %.1f is %.0f%% off the true %.1f: re-encoding",
            recorded,
            100 * drift(recorded, true),
            true,
        )
        return reencode(store, collection, spec.with_state(bm25_stats=stats), true)
    if unknown:  # chunks from before lengths were kept: their length recorded, their vector as it is
        for k in range(0, len(unknown), PAGE):
            page = unknown[k : k + PAGE]
            store.update_sparse(collection, [(pid, bm25.embed_document(t), {BM25_LEN: ln}) for pid, ln, t in page])
        store.flush()
    spec = spec.with_state(bm25_stats=stats)
    store.set_spec(collection, spec)
    return spec, 0


def reencode(store: Store, collection: str, spec: CollectionSpec, avg_len: float) -> tuple[CollectionSpec, int]:
    """Re-encode every stored chunk's sparse vector with `avg_len` from its stored text, then record avg_len.
    Returns (the spec recorded, chunks re-encoded)."""
    store.set_spec(collection, spec.with_state(bm25_stats={**spec.bm25_stats, "pending_avg_len": avg_len}))
    enc = encoder(spec, avg_len)
    ids = [h.id for h in store.scroll(collection, [])]
    n, total = 0, 0
    for k in range(0, len(ids), PAGE):
        updates = []
        for h in store.get_points(collection, ids[k : k + PAGE], ["title", "heading_path", "text"]):
            text = stored_embed_text(h.payload)
            length = enc.length(text)
            updates.append((h.id, enc.embed_document(text), {BM25_LEN: length}))
            n, total = n + 1, total + length
        store.update_sparse(collection, updates)
    store.flush()  # every new vector durable before the pending mark goes
    stats = {key: v for key, v in spec.bm25_stats.items() if key != "pending_avg_len"}
    done = spec.with_state(
        sparse={**spec.sparse, "avg_len": avg_len}, bm25_stats={**stats, "n_chunks": n, "total_len": total}
    )
    store.set_spec(collection, done)
    log.info("ingest: BM25 avg_len %.1f recorded, %d chunks re-encoded", avg_len, n)
    return done, n


def finish_pending(store: Store, collection: str, spec: CollectionSpec) -> tuple[CollectionSpec, int]:
    """Finish a re-encode a killed job left under way (its pending_avg_len recorded). Returns (spec, chunks)."""
    pending = spec.bm25_stats.get("pending_avg_len")
    if pending is None:
        return spec, 0
    log.info("ingest: finishing the re-encode to BM25 avg_len %.1f a stopped job left", pending)
    return reencode(store, collection, spec, pending)
