"""Question -> sparse + dense candidates -> fusion in Qdrant -> optional rerank -> top-k contexts.

Every context carries its rank and score in each stage it appeared in (sparse, dense, fused, rerank), and
the result keeps each stage's full candidate list, so the diagnostics can tell where a document was lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence

from rag.embedding import Embedder
from rag.sparse import Bm25Encoder
from rag.store import Hit, QuerySpec, Store

Mode = Literal["hybrid", "dense", "sparse"]
STAGE_FIELDS = ["doc_id"]


@dataclass(frozen=True)
class RetrievalParams:
    mode: Mode = "hybrid"
    fusion: Literal["rrf", "dbsf"] = "dbsf"  # the measured default; see rag/config.py
    rrf_k: int = 2
    weights: tuple[float, float] | None = None  # (sparse, dense)
    top_k: int = 5
    candidates: int = 100
    filters: dict | None = None
    rerank: bool = False
    rerank_candidates: int = 30

    def __post_init__(self) -> None:
        if self.top_k <= 0:
            raise ValueError("top_k must be greater than 0.")
        if self.candidates < self.top_k:
            raise ValueError("candidates must be at least top_k.")


@dataclass
class StageHit:
    rank: int  # from 1
    score: float


@dataclass
class Context:
    chunk_id: str
    doc_id: str
    title: str
    source: str
    text: str
    start: int
    end: int
    heading_path: list[str]
    page: int | None
    rank: int
    score: float
    stages: dict[str, StageHit] = field(default_factory=dict)


@dataclass
class StageList:
    """One stage's ranked candidates: (chunk id, document id, score)."""

    name: str
    hits: list[tuple[str, str, float]]

    def rank_of(self, chunk_id: str) -> StageHit | None:
        for i, (cid, _, score) in enumerate(self.hits, 1):
            if cid == chunk_id:
                return StageHit(i, score)
        return None


@dataclass
class RetrievalResult:
    contexts: list[Context]
    stages: dict[str, StageList]
    timings_ms: dict[str, float]


class Reranker(Protocol):
    name: str

    def score(self, question: str, passages: Sequence[str]) -> list[float]: ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder, by model name or path."""

    def __init__(self, model: str, device: str = "cpu"):
        from sentence_transformers import CrossEncoder

        self.name = model
        self.model = CrossEncoder(model, device=device)

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        return [float(s) for s in self.model.predict([(question, p) for p in passages], show_progress_bar=False)]


def _stage(name: str, hits: list[Hit]) -> StageList:
    return StageList(name, [(h.id, h.payload.get("doc_id", ""), h.score) for h in hits])


class Retriever:
    def __init__(self, store: Store, embedder: Embedder, bm25: Bm25Encoder, reranker: Reranker | None = None):
        self.store, self.embedder, self.bm25, self.reranker = store, embedder, bm25, reranker

    def retrieve(self, collection: str, question: str, p: RetrievalParams) -> RetrievalResult:
        """Run the stages; raises CollectionNotFoundError for an unknown collection, ValueError for bad params."""
        if p.rerank and self.reranker is None:
            raise ValueError("rerank was asked for but no reranker is configured (RAG_RERANK_MODEL).")
        timings: dict[str, float] = {}
        t = time.perf_counter()
        dense = self.embedder.encode([question])[0] if p.mode in ("hybrid", "dense") else None
        timings["embed"] = _ms(t)
        sparse = self.bm25.embed_query(question) if p.mode in ("hybrid", "sparse") else None

        final_limit = max(p.top_k, p.rerank_candidates) if p.rerank else p.top_k
        requests, names = [], []
        if sparse is not None:
            requests.append(QuerySpec(sparse=sparse, limit=p.candidates, filters=p.filters, with_payload=STAGE_FIELDS))
            names.append("sparse")
        if dense is not None:
            requests.append(QuerySpec(dense=dense, limit=p.candidates, filters=p.filters, with_payload=STAGE_FIELDS))
            names.append("dense")
        if p.mode == "hybrid":
            # The fused list is as long as the candidate lists, so the audit can see what fusion ranked low.
            requests.append(QuerySpec(
                dense=dense, sparse=sparse, fusion=p.fusion, rrf_k=p.rrf_k, weights=p.weights,
                limit=p.candidates, candidates=p.candidates, filters=p.filters, with_payload=STAGE_FIELDS,
            ))
            names.append("fused")
        t = time.perf_counter()
        results = self.store.query_batch(collection, requests)
        timings["search"] = _ms(t)
        stages = {n: _stage(n, r) for n, r in zip(names, results)}
        ranked = stages["fused" if p.mode == "hybrid" else p.mode].hits[:final_limit]

        payloads = self._payloads(collection, [cid for cid, _, _ in ranked])
        if p.rerank:
            t = time.perf_counter()
            scores = self.reranker.score(question, [payloads[cid]["text"] for cid, _, _ in ranked])
            order = sorted(range(len(ranked)), key=lambda i: -scores[i])
            ranked = [(ranked[i][0], ranked[i][1], scores[i]) for i in order]
            stages["rerank"] = StageList("rerank", ranked)
            timings["rerank"] = _ms(t)

        contexts = []
        for rank, (cid, _, score) in enumerate(ranked[: p.top_k], 1):
            pl = payloads[cid]
            contexts.append(Context(
                chunk_id=cid, doc_id=pl["doc_id"], title=pl.get("title", ""), source=pl.get("source", ""),
                text=pl["text"], start=pl["start"], end=pl["end"], heading_path=pl.get("heading_path", []),
                page=pl.get("page"), rank=rank, score=score,
                stages={n: h for n, s in stages.items() if (h := s.rank_of(cid)) is not None},
            ))
        timings["retrieval_total"] = round(sum(timings.values()), 3)
        return RetrievalResult(contexts, stages, timings)

    def _payloads(self, collection: str, ids: list[str]) -> dict[str, dict]:
        if not ids:
            return {}
        fields = ["doc_id", "title", "source", "text", "start", "end", "heading_path", "page"]
        hits = self.store.get_points(collection, ids, fields)
        return {h.id: h.payload for h in hits}


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)
