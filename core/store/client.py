"""Backend through `qdrant-client`: a Qdrant server or cluster by URL, or the client's local mode.

Local mode (pure Python, `path=`) stands in for the server in tests where no server can run; the same
congruence suite runs against a real server when one is configured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from core.errors import CollectionNotFoundError, StoreError, StoreLockedError
from core.sparse import SparseVec
from core.store.base import DENSE, INDEXED_FIELDS, SPARSE, CollectionSpec, Filters, Hit, PointData, QuerySpec, Store

SCROLL_PAGE = 1000
UPSERT_BATCH = 256


def _filter(filters: Filters | None) -> models.Filter | None:
    if not filters:
        return None
    must = []
    for key, value in filters.items():
        match = (
            models.MatchAny(any=list(value))
            if isinstance(value, (list, tuple, set))
            else models.MatchValue(value=value)
        )
        must.append(models.FieldCondition(key=key, match=match))
    return models.Filter(must=must)


def _sparse(v: SparseVec) -> models.SparseVector:
    return models.SparseVector(indices=list(v.indices), values=list(v.values))


class QdrantClientStore(Store):
    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: Path | None = None,
        timeout_s: float = 30.0,
        shards: int | None = None,
        replication_factor: int | None = None,
    ):
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url (a server) or path (local mode).")
        self.backend = "server" if url else "local"
        self.shards, self.replication_factor = shards, replication_factor
        try:
            if url:
                self.client = QdrantClient(url=url, api_key=api_key, timeout=int(timeout_s))
                self.client.get_collections()  # fail now, with a clear message, if unreachable
            else:
                Path(path).mkdir(parents=True, exist_ok=True)
                self.client = QdrantClient(path=str(path))
        except RuntimeError as exc:  # local mode's own lock
            raise StoreLockedError(f"the local store at {path} is in use by another process: {exc}") from None
        except (ResponseHandlingException, UnexpectedResponse, OSError) as exc:
            raise StoreError(f"cannot reach Qdrant at {url}: {exc}") from exc

    # -- collections ---------------------------------------------------------------------------
    # A server may hold other applications' collections too: those without this project's metadata are
    # not listed and have no spec (so a query names no such collection), and are never written to.
    def _spec(self, name: str) -> CollectionSpec | None:
        """The spec, or None when the collection is missing or is not one of ours."""
        try:
            meta = self.client.get_collection(name).config.metadata
        except (UnexpectedResponse, ValueError, KeyError):  # gone (a server says 404, local mode ValueError)
            return None
        ours = (
            isinstance(meta, dict)
            and isinstance(meta.get("dense_dim"), int)
            and all(isinstance(meta.get(k), dict) for k in ("embedding", "chunker", "sparse"))
        )
        return CollectionSpec.from_metadata(meta) if ours else None

    def list_collections(self) -> list[str]:
        names = [c.name for c in self.client.get_collections().collections]
        return sorted(n for n in names if self._spec(n) is not None)

    def get_spec(self, name: str) -> CollectionSpec | None:
        if not self.client.collection_exists(name):
            return None
        return self._spec(name)

    def _create(self, name: str, spec: CollectionSpec) -> None:
        if self.client.collection_exists(name):  # get_spec said None: someone else's collection
            raise StoreError(f"collection {name!r} exists but was not created by this service (no metadata).")
        self.client.create_collection(
            name,
            vectors_config={DENSE: models.VectorParams(size=spec.dense_dim, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            shard_number=self.shards,
            replication_factor=self.replication_factor,
            metadata=spec.to_metadata(),
        )
        if self.backend == "server":  # local mode has no payload indexes (and warns if asked)
            for fld in INDEXED_FIELDS:
                self.client.create_payload_index(name, fld, models.PayloadSchemaType.KEYWORD, wait=True)

    def set_spec(self, name: str, spec: CollectionSpec) -> None:
        if self._spec(name) is None:
            raise CollectionNotFoundError(f"no collection named {name!r}")
        self.client.update_collection(name, metadata=spec.to_metadata())

    def drop_collection(self, name: str) -> None:
        self.client.delete_collection(name)

    def _require(self, name: str) -> None:
        if not self.client.collection_exists(name):
            raise CollectionNotFoundError(f"no collection named {name!r}")

    # -- points --------------------------------------------------------------------------------
    def upsert(self, name: str, points: Sequence[PointData]) -> None:
        for i in range(0, len(points), UPSERT_BATCH):
            batch = [
                models.PointStruct(
                    id=p.id, vector={DENSE: [float(x) for x in p.dense], SPARSE: _sparse(p.sparse)}, payload=p.payload
                )
                for p in points[i : i + UPSERT_BATCH]
            ]
            self.client.upsert(name, batch, wait=True)

    def update_sparse(self, name: str, points: Sequence[tuple[str, SparseVec, dict]]) -> None:
        for i in range(0, len(points), UPSERT_BATCH):
            batch = points[i : i + UPSERT_BATCH]
            there = {str(r.id) for r in self.client.retrieve(name, [p[0] for p in batch], with_payload=False)}
            batch = [p for p in batch if p[0] in there]  # a missing id fails the whole request
            if not batch:
                continue
            vectors = [models.PointVectors(id=pid, vector={SPARSE: _sparse(v)}) for pid, v, _ in batch]
            self.client.update_vectors(name, vectors, wait=True)
            groups: dict[str, list[str]] = {}
            for pid, _, payload in batch:  # one request per distinct payload, not per point
                groups.setdefault(json.dumps(payload, sort_keys=True), []).append(pid)
            for payload, ids in groups.items():
                self.client.set_payload(name, json.loads(payload), points=ids, wait=True)

    def delete_points(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self.client.delete(name, models.PointIdsList(points=list(ids)), wait=True)

    def delete_where(self, name: str, filters: Filters) -> None:
        if not filters:
            raise ValueError("delete_where needs at least one filter; use drop_collection to delete all.")
        self.client.delete(name, models.FilterSelector(filter=_filter(filters)), wait=True)

    def count(self, name: str, filters: Filters | None = None) -> int:
        self._require(name)
        return self.client.count(name, count_filter=_filter(filters), exact=True).count

    def scroll(self, name: str, fields: Sequence[str], filters: Filters | None = None) -> list[Hit]:
        self._require(name)
        out, offset = [], None
        while True:
            records, offset = self.client.scroll(
                name, scroll_filter=_filter(filters), limit=SCROLL_PAGE, offset=offset, with_payload=list(fields)
            )
            out.extend(Hit(str(r.id), 0.0, r.payload or {}) for r in records)
            if offset is None:
                return out

    def get_points(self, name: str, ids: Sequence[str], fields: Sequence[str]) -> list[Hit]:
        self._require(name)
        records = self.client.retrieve(name, list(ids), with_payload=list(fields), with_vectors=False)
        return [Hit(str(r.id), 0.0, r.payload or {}) for r in records]

    @staticmethod
    def _request(q: QuerySpec) -> models.QueryRequest:
        flt = _filter(q.filters)
        nearest = []
        if q.sparse is not None:
            nearest.append((_sparse(q.sparse), SPARSE))
        if q.dense is not None:
            nearest.append(([float(x) for x in q.dense], DENSE))
        payload = q.with_payload if isinstance(q.with_payload, bool) else list(q.with_payload)
        if len(nearest) == 1:
            ((vec, using),) = nearest
            return models.QueryRequest(query=vec, using=using, limit=q.limit, filter=flt, with_payload=payload)
        fuse = (
            models.RrfQuery(rrf=models.Rrf(k=q.rrf_k, weights=list(q.weights) if q.weights else None))
            if q.fusion == "rrf"
            else models.FusionQuery(fusion=models.Fusion.DBSF)
        )
        return models.QueryRequest(
            prefetch=[
                models.Prefetch(query=vec, using=using, limit=q.candidates, filter=flt) for vec, using in nearest
            ],
            query=fuse,
            filter=flt,
            limit=q.limit,
            with_payload=payload,
        )

    def query_batch(self, name: str, requests: Sequence[QuerySpec]) -> list[list[Hit]]:
        self._require(name)
        responses = self.client.query_batch_points(name, [self._request(q) for q in requests])
        return [[Hit(str(p.id), float(p.score), p.payload or {}) for p in r.points] for r in responses]

    def close(self) -> None:
        self.client.close()
