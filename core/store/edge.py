"""Embedded backend: Qdrant Edge, the Qdrant engine in-process, one shard per collection.

Layout under data_dir:  lock, collections/<name>/collection.json, collections/<name>/shard/.
The data dir has one owning process at a time (a file lock, released by the OS even on SIGKILL).

Concurrency: shard calls (query, retrieve, count, scroll, update, flush) take no lock of ours; queries and
writes from many threads go straight to the shard. Why none is needed, checked on qdrant-edge-py 0.9.0:

- Underneath is the Qdrant engine, which keeps a shard's segments behind a read-write lock of its own
  (parking_lot RwLock around the segment holder: reads share it, an update takes it alone), the same code
  that lets a Qdrant server search while it writes. It does not count on the GIL.
- Each shard call also holds the GIL for its whole length (measured: beside a thread running 6-10 ms
  queries, a thread sleeping 0.5 ms wakes after 5.7 ms at p50, as beside a GIL-holding regex, against
  0.6 ms beside numpy, which releases it). So calls from Python threads run one at a time anyway, and a
  lock of ours would only add waiting. The cost: a search stalls every other Python thread for its
  length, so search does not scale with threads; the embedder (torch) releases the GIL and does.
- Stress (4 threads querying then retrieving the hits, 2 threads upserting, deleting by filter and
  flushing the same points, 8 s): 0 errors and no torn payloads; 63 of 4,291 retrieves missed ids that
  the query before had returned, which is why Retriever._existing skips vanished ids. tests/service/
  test_race.py repeats this on this class and through the service.

The one unsafe pairing is closing a shard (close, drop_collection) while another thread is in a call on
it: that call fails. Only shutdown and drop_collection close shards; `_guard` covers opening and closing.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Sequence

import qdrant_edge as qe
from filelock import FileLock, Timeout

from core.errors import CollectionNotFoundError, StoreError, StoreLockedError
from core.sparse import SparseVec
from core.store.base import DENSE, INDEXED_FIELDS, SPARSE, CollectionSpec, Filters, Hit, PointData, QuerySpec, Store

SCROLL_PAGE = 1000


def _filter(filters: Filters | None) -> qe.Filter | None:
    if not filters:
        return None
    must = []
    for key, value in filters.items():
        if isinstance(value, (list, tuple, set)):
            must.append(qe.FieldCondition(key, match=qe.MatchAny(list(value))))
        else:
            must.append(qe.FieldCondition(key, match=qe.MatchValue(value)))
    return qe.Filter(must=must)


def _sparse(v: SparseVec) -> qe.SparseVector:
    return qe.SparseVector(indices=list(v.indices), values=list(v.values))


def _by_payload(points: Sequence[tuple[str, SparseVec, dict]]) -> dict[str, list[str]]:
    """Point ids grouped by the payload fields to set on them (as sorted JSON)."""
    groups: dict[str, list[str]] = {}
    for pid, _, payload in points:
        groups.setdefault(json.dumps(payload, sort_keys=True), []).append(pid)
    return groups


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class EdgeStore(Store):
    backend = "edge"

    def __init__(self, data_dir: Path):
        self.root = Path(data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.root / "lock"))
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            owner = (self.root / "owner").read_text().strip() if (self.root / "owner").exists() else "unknown"
            detail = f"the embedded store at {self.root} is in use by another process ({owner})"
            raise StoreLockedError(
                f"{detail}. Stop it, or if it is the service, send the job to it with `rag ingest --submit "
                "http://HOST:PORT ...`, or point RAG_DATA_DIR elsewhere.",
                detail,
            ) from None
        (self.root / "owner").write_text(f"pid {os.getpid()}")
        self._shards: dict[str, qe.EdgeShard] = {}
        self._guard = threading.RLock()

    # -- collections ---------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self.root / "collections" / name

    def list_collections(self) -> list[str]:
        base = self.root / "collections"
        return sorted(p.name for p in base.iterdir() if (p / "collection.json").exists()) if base.exists() else []

    def get_spec(self, name: str) -> CollectionSpec | None:
        meta = self._dir(name) / "collection.json"
        return CollectionSpec.from_metadata(json.loads(meta.read_text())) if meta.exists() else None

    def _config(self, spec: CollectionSpec) -> qe.EdgeConfig:
        return qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=spec.dense_dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )

    def _create(self, name: str, spec: CollectionSpec) -> None:
        d = self._dir(name)
        d.mkdir(parents=True, exist_ok=True)
        # The spec is written first: a collection.json with no shard is re-created empty on open.
        _write_json_atomic(d / "collection.json", spec.to_metadata())
        self._shard(name)

    def _shard(self, name: str) -> qe.EdgeShard:
        with self._guard:
            if name in self._shards:
                return self._shards[name]
            spec = self.get_spec(name)
            if spec is None:
                raise CollectionNotFoundError(f"no collection named {name!r}")
            path = self._dir(name) / "shard"
            try:
                if (path / "edge_config.json").exists():
                    shard = qe.EdgeShard.load(str(path))
                else:
                    shutil.rmtree(path, ignore_errors=True)
                    shard = qe.EdgeShard.create(str(path), self._config(spec))
                    for fld in INDEXED_FIELDS:
                        shard.update(qe.UpdateOperation.create_field_index(fld, qe.PayloadSchemaType.Keyword))
                    shard.flush()
            except Exception as exc:
                raise StoreError(f"cannot open collection {name!r} at {path}: {exc}") from exc
            self._shards[name] = shard
            return shard

    def set_spec(self, name: str, spec: CollectionSpec) -> None:
        if self.get_spec(name) is None:
            raise CollectionNotFoundError(f"no collection named {name!r}")
        _write_json_atomic(self._dir(name) / "collection.json", spec.to_metadata())

    def drop_collection(self, name: str) -> None:
        with self._guard:
            shard = self._shards.pop(name, None)
            if shard is not None:
                shard.close()
            shutil.rmtree(self._dir(name), ignore_errors=True)

    # -- points --------------------------------------------------------------------------------
    def upsert(self, name: str, points: Sequence[PointData]) -> None:
        if not points:
            return
        ops = [
            qe.Point(p.id, {DENSE: [float(x) for x in p.dense], SPARSE: _sparse(p.sparse)}, p.payload) for p in points
        ]
        self._shard(name).update(qe.UpdateOperation.upsert_points(ops))

    def update_sparse(self, name: str, points: Sequence[tuple[str, SparseVec, dict]]) -> None:
        if not points:
            return
        shard = self._shard(name)
        there = {h.id for h in self.get_points(name, [pid for pid, _, _ in points], [])}  # a missing id fails it all
        points = [p for p in points if p[0] in there]
        if not points:
            return
        shard.update(
            qe.UpdateOperation.update_vectors([qe.PointVectors(pid, {SPARSE: _sparse(v)}) for pid, v, _ in points])
        )
        for payload, ids in _by_payload(points).items():  # one operation per distinct payload, not per point
            shard.update(qe.UpdateOperation.set_payload(ids, json.loads(payload)))

    def delete_points(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self._shard(name).update(qe.UpdateOperation.delete_points(list(ids)))

    def delete_where(self, name: str, filters: Filters) -> None:
        if not filters:
            raise ValueError("delete_where needs at least one filter; use drop_collection to delete all.")
        self._shard(name).update(qe.UpdateOperation.delete_points_by_filter(_filter(filters)))

    def count(self, name: str, filters: Filters | None = None) -> int:
        return self._shard(name).count(qe.CountRequest(exact=True, filter=_filter(filters)))

    def scroll(self, name: str, fields: Sequence[str], filters: Filters | None = None) -> list[Hit]:
        shard, out, offset = self._shard(name), [], None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(offset=offset, limit=SCROLL_PAGE, filter=_filter(filters), with_payload=list(fields))
            )
            out.extend(Hit(str(r.id), 0.0, r.payload or {}) for r in records)
            if offset is None:
                return out

    def get_points(self, name: str, ids: Sequence[str], fields: Sequence[str]) -> list[Hit]:
        records = self._shard(name).retrieve(list(ids), with_payload=list(fields), with_vector=False)
        return [Hit(str(r.id), 0.0, r.payload or {}) for r in records]

    def _request(self, q: QuerySpec) -> qe.QueryRequest:
        flt = _filter(q.filters)
        nearest = []
        if q.sparse is not None:
            nearest.append(qe.Query.Nearest(_sparse(q.sparse), using=SPARSE))
        if q.dense is not None:
            nearest.append(qe.Query.Nearest([float(x) for x in q.dense], using=DENSE))
        payload = q.with_payload if isinstance(q.with_payload, bool) else list(q.with_payload)
        if len(nearest) == 1:
            return qe.QueryRequest(limit=q.limit, query=nearest[0], filter=flt, with_payload=payload)
        weights = list(q.weights) if q.weights else None
        fuse = qe.Fusion.Rrf(k=q.rrf_k, weights=weights) if q.fusion == "rrf" else qe.Fusion.Dbsf()
        return qe.QueryRequest(
            limit=q.limit,
            prefetches=[qe.Prefetch(limit=q.candidates, query=n, filter=flt) for n in nearest],
            query=fuse,
            filter=flt,
            with_payload=payload,
        )

    def query_batch(self, name: str, requests: Sequence[QuerySpec]) -> list[list[Hit]]:
        batch = qe.QueryBatchRequest([self._request(q) for q in requests])
        return [
            [Hit(str(p.id), float(p.score), p.payload or {}) for p in res]
            for res in self._shard(name).query_batch(batch)
        ]

    def flush(self) -> None:
        with self._guard:
            for shard in self._shards.values():
                shard.flush()

    def optimize(self, name: str) -> None:
        self._shard(name).optimize()

    def close(self) -> None:
        with self._guard:
            for shard in self._shards.values():
                shard.flush()
                shard.close()
            self._shards.clear()
            if self._lock.is_locked:
                (self.root / "owner").unlink(missing_ok=True)
                self._lock.release()
