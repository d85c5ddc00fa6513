"""The store interface: one collection schema, two backends (Qdrant Edge in-process, a Qdrant server).

Schema of every collection:
- named dense vector `dense` (cosine) and named sparse vector `bm25` with Qdrant's IDF modifier;
- payload: doc_id, chunk_id, source, title, text, start, end, position, n_chunks, heading_path,
  doc_type, content_hash, metadata, and page where the format has pages;
- keyword payload indexes on the fields filters use (INDEXED_FIELDS);
- collection metadata recording what built it (embedding model and dimension, chunker, BM25 settings).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Sequence

from core.errors import CollectionMismatchError
from core.sparse import SparseVec

DENSE = "dense"
SPARSE = "bm25"
INDEXED_FIELDS = ("doc_id", "source", "doc_type")
SCHEMA_VERSION = 1

Fusion = Literal["rrf", "dbsf"]
# A filter is {payload field: value or list of accepted values}; all fields must match.
Filters = dict[str, Any]


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection is built with. Ingesting with anything else is refused.

    `sparse["avg_len"]` is BM25's average document length, which follows the collection as it grows unless a
    setting pins it (ingest/avg_len.py). Two fields are state, not settings, so `differences` ignores them:
    `ids_avg_len`, the avg_len the collection's point ids hash (None: they hash none; collections made before
    avg_len could change keep the one their ids were made with), and `bm25_stats` (ingest/avg_len.py:
    n_chunks, total_len, pinned, and pending_avg_len while a re-encode is under way).
    """

    dense_dim: int
    embedding: dict
    chunker: dict
    sparse: dict
    ids_avg_len: float | None = None
    bm25_stats: dict = field(default_factory=dict, compare=False)

    def to_metadata(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "dense_dim": self.dense_dim,
            "embedding": self.embedding,
            "chunker": self.chunker,
            "sparse": self.sparse,
            # Never a null: a server's metadata may drop it, and its absence means a collection from before.
            **({"ids_without_avg_len": True} if self.ids_avg_len is None else {"ids_avg_len": self.ids_avg_len}),
            "bm25_stats": self.bm25_stats,
        }

    @classmethod
    def from_metadata(cls, meta: dict) -> "CollectionSpec":
        if meta.get("ids_without_avg_len") is True:
            ids_avg_len = None
        else:  # no ids_avg_len: metadata from before it, whose point ids hashed the avg_len recorded then (unchanged)
            ids_avg_len = meta.get("ids_avg_len", meta["sparse"].get("avg_len"))
        stats = meta.get("bm25_stats") or {}
        return cls(meta["dense_dim"], meta["embedding"], meta["chunker"], meta["sparse"], ids_avg_len, stats)

    def with_state(self, **changes) -> "CollectionSpec":
        """This spec with other values of its fields (say a new sparse or bm25_stats)."""
        return replace(self, **changes)

    def differences(self, other: "CollectionSpec") -> list[str]:
        """Human-readable list of settings that differ between two specs (empty when compatible)."""
        mine, theirs = self.to_metadata(), other.to_metadata()
        out = []
        for section in ("embedding", "chunker", "sparse"):
            for key in sorted(set(mine[section]) | set(theirs[section])):
                a, b = mine[section].get(key), theirs[section].get(key)
                if a != b:
                    out.append(f"{section}.{key}: collection has {a!r}, settings give {b!r}")
        if mine["dense_dim"] != theirs["dense_dim"]:
            out.append(f"dense_dim: collection has {mine['dense_dim']}, settings give {theirs['dense_dim']}")
        return out


@dataclass
class PointData:
    id: str
    dense: Sequence[float]
    sparse: SparseVec
    payload: dict


@dataclass(frozen=True)
class QuerySpec:
    """Nearest points by dense, by sparse, or both fused in Qdrant in one Query API request.

    With both vectors, `candidates` points are prefetched from each (sparse first, then dense) and fused:
    RRF scores a point sum_i 1 / (rank_i / w_i + k - 1), rank from 1, w_i the weight of retriever i
    (default 1), which is 1 / (k + rank - 1) per list for equal weights; DBSF normalises each list by its
    mean +- 3 standard deviations and sums.
    """

    dense: Sequence[float] | None = None
    sparse: SparseVec | None = None
    # No defaults here: the engine's parameters (engine/params.py, from the settings) name them.
    fusion: Fusion | None = None
    rrf_k: int | None = None
    weights: Sequence[float] | None = None
    limit: int = 10
    candidates: int = 100
    filters: Filters | None = None
    with_payload: bool | Sequence[str] = True

    def __post_init__(self) -> None:
        if self.dense is None and self.sparse is None:
            raise ValueError("a query needs a dense vector, a sparse vector, or both.")
        if self.limit <= 0 or self.candidates <= 0:
            raise ValueError("limit and candidates must be greater than 0.")
        if self.dense is not None and self.sparse is not None and self.fusion is None:
            raise ValueError("a query with both vectors names its fusion ('rrf' or 'dbsf').")
        if self.fusion == "rrf" and (self.rrf_k is None or self.rrf_k < 1):
            raise ValueError("rrf fusion needs rrf_k of at least 1.")
        if self.weights is not None and len(self.weights) != 2:
            raise ValueError("weights are (sparse, dense): give two numbers.")


@dataclass
class Hit:
    id: str
    score: float
    payload: dict = field(default_factory=dict)


class Store(abc.ABC):
    """A set of named collections. Implementations must give the same results for the same calls."""

    backend: str

    # -- collections ---------------------------------------------------------------------------
    @abc.abstractmethod
    def list_collections(self) -> list[str]: ...

    @abc.abstractmethod
    def get_spec(self, name: str) -> CollectionSpec | None:
        """The spec recorded with the collection, or None if there is no such collection."""

    @abc.abstractmethod
    def _create(self, name: str, spec: CollectionSpec) -> None: ...

    @abc.abstractmethod
    def drop_collection(self, name: str) -> None: ...

    @abc.abstractmethod
    def set_spec(self, name: str, spec: CollectionSpec) -> None:
        """Record another spec for an existing collection (its BM25 avg_len and statistics as they change),
        durably before returning."""

    def ensure_collection(self, name: str, spec: CollectionSpec) -> bool:
        """Create the collection if missing; return True when created.

        Raises CollectionMismatchError when it exists with other settings: vectors from two models (or
        chunkers) must never be mixed silently in one collection.
        """
        existing = self.get_spec(name)
        if existing is None:
            self._create(name, spec)
            return True
        diffs = existing.differences(spec)
        if diffs:
            raise CollectionMismatchError(
                f"collection {name!r} was built with other settings; ingest into a new collection or "
                f"re-create this one. Differences: " + "; ".join(diffs)
            )
        return False

    # -- points --------------------------------------------------------------------------------
    @abc.abstractmethod
    def upsert(self, name: str, points: Sequence[PointData]) -> None: ...

    @abc.abstractmethod
    def update_sparse(self, name: str, points: Sequence[tuple[str, SparseVec, dict]]) -> None:
        """Replace the sparse vector of each (id, sparse vector, payload fields) and set those payload fields;
        the dense vector and the rest of the payload stay. Points that do not exist are skipped."""

    @abc.abstractmethod
    def delete_points(self, name: str, ids: Sequence[str]) -> None: ...

    @abc.abstractmethod
    def delete_where(self, name: str, filters: Filters) -> None: ...

    @abc.abstractmethod
    def count(self, name: str, filters: Filters | None = None) -> int: ...

    @abc.abstractmethod
    def scroll(self, name: str, fields: Sequence[str], filters: Filters | None = None) -> list[Hit]:
        """Every matching point with the given payload fields (score 0), in id order."""

    @abc.abstractmethod
    def get_points(self, name: str, ids: Sequence[str], fields: Sequence[str]) -> list[Hit]:
        """The points with these ids (those that exist), with the given payload fields."""

    @abc.abstractmethod
    def query_batch(self, name: str, requests: Sequence["QuerySpec"]) -> list[list[Hit]]:
        """Run several queries in one call to the engine; results in request order."""

    def query(self, name: str, **kw) -> list[Hit]:
        """One query; keyword arguments are the fields of QuerySpec."""
        return self.query_batch(name, [QuerySpec(**kw)])[0]

    def flush(self) -> None:
        """Make every acknowledged write durable."""

    def optimize(self, name: str) -> None:
        """Build indexes and merge segments; slow, so never on the request path."""

    def close(self) -> None: ...

    # -- derived -------------------------------------------------------------------------------
    def index_state(self, name: str) -> dict[str, dict]:
        """doc_id -> {"source": str, "chunks": set of point ids}: what the collection holds per document."""
        state: dict[str, dict] = {}
        for hit in self.scroll(name, ["doc_id", "source"]):
            entry = state.setdefault(hit.payload["doc_id"], {"source": hit.payload.get("source"), "chunks": set()})
            entry["chunks"].add(hit.id)
        return state

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
