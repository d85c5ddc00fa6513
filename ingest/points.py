"""What a chunk becomes in the store: its point id, the text embedded for it, and its payload.

A chunk's point id is a hash of its document id, the document's content hash, its span, and the collection's
index settings (`index_key`), so the same chunk under the same settings always gets the same id. BM25's avg_len
is not one of them: it changes as the collection grows (ingest/avg_len.py), and a chunk's id must not.
"""

from __future__ import annotations

import hashlib
import json
import uuid

from core.store import CollectionSpec
from ingest.chunking import Chunk
from ingest.documents import Document

POINT_NAMESPACE = uuid.UUID("6f1c1f7e-3a52-4c0e-9a57-4f0bd1a8c1d2")


# The payload field holding a chunk's length as BM25 counts it (the embedded text's tokens, stop words removed).
BM25_LEN = "bm25_len"


def index_key(spec: CollectionSpec) -> str:
    """A hash of the collection's index settings (embedding, chunker, sparse encoder): part of every point id.

    The sparse encoder enters without its avg_len, or, for a collection made before avg_len could change, with
    the one its ids were made with (`spec.ids_avg_len`): there the hash is the very one those ids were made with
    (every field of the metadata then, schema_version 1 included), so re-running an ingest embeds nothing.
    """
    sparse = dict(spec.sparse)
    if spec.ids_avg_len is None:
        sparse.pop("avg_len", None)
    else:
        sparse["avg_len"] = spec.ids_avg_len
    key = {
        "schema_version": 1,
        "dense_dim": spec.dense_dim,
        "embedding": spec.embedding,
        "chunker": spec.chunker,
        "sparse": sparse,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def point_ids(doc: Document, chunks: list[Chunk], key: str) -> list[str]:
    h = doc.content_hash
    return [
        str(uuid.uuid5(POINT_NAMESPACE, f"{doc.doc_id}\x1f{h}\x1f{c.position}\x1f{c.start}\x1f{c.end}\x1f{key}"))
        for c in chunks
    ]


def embed_text(doc: Document, chunk: Chunk) -> str:
    """What gets embedded (dense and sparse) for a chunk: its title and heading path, then its text."""
    return compose(doc.title, chunk.heading_path, chunk.text)


def stored_embed_text(p: dict) -> str:
    """What was embedded for a stored chunk, from its payload (title, heading_path, text)."""
    return compose(p.get("title") or "", p.get("heading_path") or [], p.get("text") or "")


def compose(title: str, heading_path, text: str) -> str:
    context = [title] if title else []
    context += [h for h in heading_path if h != title]
    return (" > ".join(context) + "\n\n" + text) if context else text


def payload(doc: Document, c: Chunk, pid: str, n_chunks: int) -> dict:
    """The stored payload of chunk `c` (point id `pid`) of `doc`, which has `n_chunks` chunks."""
    out = {
        "doc_id": doc.doc_id,
        "chunk_id": pid,
        "source": doc.source,
        "doc_type": doc.doc_type,
        "title": doc.title,
        "text": c.text,
        "start": c.start,
        "end": c.end,
        "position": c.position,
        "n_chunks": n_chunks,
        "n_tokens": c.n_tokens,
        "heading_path": list(c.heading_path),
        "content_hash": doc.content_hash,
        "metadata": doc.metadata,
    }
    page = doc.page_at(c.start)
    if page is not None:
        out["page"] = page
    return out
