"""Question -> sparse + dense candidates -> fusion in Qdrant -> optional rerank -> top-k contexts.

Every context carries its rank and score in each stage it appeared in (sparse, dense, fused, rerank), and
the result keeps each stage's full candidate list, so the diagnostics can tell where a document was lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from core import tracing
from core.embedding import Embedder
from core.errors import InvalidRequestError
from core.sparse import Bm25Encoder
from core.store import Hit, QuerySpec, Store
from engine.params import RetrievalParams
from engine.rerank import Reranker

STAGE_FIELDS = ["doc_id"]
PAYLOAD_FIELDS = ["doc_id", "title", "source", "text", "start", "end", "heading_path", "page"]


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


def _stage(name: str, hits: list[Hit]) -> StageList:
    return StageList(name, [(h.id, h.payload.get("doc_id", ""), h.score) for h in hits])


class Retriever:
    def __init__(self, store: Store, embedder: Embedder, bm25: Bm25Encoder, reranker: Reranker | None = None):
        self.store, self.embedder, self.bm25, self.reranker = store, embedder, bm25, reranker

    def retrieve(self, collection: str, question: str, p: RetrievalParams) -> RetrievalResult:
        """Run the stages; raises CollectionNotFoundError for an unknown collection, InvalidRequestError
        ("rerank_unavailable") when rerank is asked for and no reranker is configured."""
        if p.rerank and self.reranker is None:
            raise InvalidRequestError("rerank_unavailable", "no reranker is configured (set RAG_RERANK_MODEL)")
        with tracing.span("retrieve", tracing.RETRIEVER) as root:
            result = self._retrieve(collection, question, p)
            if root.recording:
                root.set({tracing.INPUT: question, "rag.collection": collection, "metadata": p.describe()})
                root.set(tracing.documents("retrieval.documents", _docs(result.contexts)))
        return result

    def _retrieve(self, collection: str, question: str, p: RetrievalParams) -> RetrievalResult:
        timings: dict[str, float] = {}
        t = time.perf_counter()
        with tracing.span("embed", tracing.EMBEDDING) as sp:
            dense = self.embedder.encode_query(question) if p.mode in ("hybrid", "dense") else None
            if sp.recording:
                sp.set({"embedding.model_name": self.embedder.name, "embedding.embeddings.0.embedding.text": question})
        timings["embed"] = _ms(t)
        sparse = self.bm25.embed_query(question) if p.mode in ("hybrid", "sparse") else None

        names, requests = stage_requests(p, dense, sparse)
        t = time.perf_counter()
        t_ns = time.time_ns()
        results = self.store.query_batch(collection, requests)
        timings["search"] = _ms(t)
        stages = {n: _stage(n, r) for n, r in zip(names, results)}
        ranked, payloads = self._existing(
            collection, stages["fused" if p.mode == "hybrid" else p.mode].hits, p.final_limit
        )
        if tracing.enabled():  # the stages ran in one batch: each span has the batch's start and end
            end_ns = t_ns + int(timings["search"] * 1e6)
            texts = {cid: pl.get("text") for cid, pl in payloads.items()}
            for name in names:
                attrs = {tracing.INPUT: question, "rag.stage": name, "rag.batched": len(names) > 1}
                if name == "fused":
                    attrs["rag.fusion"] = p.fusion
                attrs.update(tracing.documents("retrieval.documents", _hits(stages[name].hits, texts)))
                tracing.record("fusion" if name == "fused" else name, tracing.RETRIEVER, t_ns, end_ns, attrs)
        if p.rerank:
            t = time.perf_counter()
            with tracing.span("rerank", tracing.RERANKER) as sp:
                scores = self.reranker.score(question, [payloads[cid]["text"] for cid, _, _ in ranked])
                order = sorted(range(len(ranked)), key=lambda i: -scores[i])
                before, ranked = ranked, [(ranked[i][0], ranked[i][1], scores[i]) for i in order]
                if sp.recording:
                    texts = {cid: pl.get("text") for cid, pl in payloads.items()}
                    sp.set(
                        {
                            "reranker.query": question,
                            "reranker.model_name": getattr(self.reranker, "name", None),
                            "reranker.top_k": p.top_k,
                            **tracing.documents("reranker.input_documents", _hits(before, texts)),
                            **tracing.documents("reranker.output_documents", _hits(ranked, texts)),
                        }
                    )
            stages["rerank"] = StageList("rerank", ranked)
            timings["rerank"] = _ms(t)

        contexts = []
        for rank, (cid, _, score) in enumerate(ranked[: p.top_k], 1):
            pl = payloads[cid]
            contexts.append(
                Context(
                    chunk_id=cid,
                    doc_id=pl["doc_id"],
                    title=pl.get("title", ""),
                    source=pl.get("source", ""),
                    text=pl["text"],
                    start=pl["start"],
                    end=pl["end"],
                    heading_path=pl.get("heading_path", []),
                    page=pl.get("page"),
                    rank=rank,
                    score=score,
                    stages={n: h for n, s in stages.items() if (h := s.rank_of(cid)) is not None},
                )
            )
        timings["retrieval_total"] = round(sum(timings.values()), 3)
        return RetrievalResult(contexts, stages, timings)

    def _existing(self, collection: str, hits: list[tuple[str, str, float]], n: int):
        """The first `n` hits whose points still exist, with their payloads.

        The ranking and the payloads come from two calls; a document deleted or re-ingested in between
        leaves ids with no point. Those are skipped (the next hits take their places), so every context
        returned exists and a query racing an update never fails.
        """
        ranked: list[tuple[str, str, float]] = []
        payloads: dict[str, dict] = {}
        pos = 0
        while len(ranked) < n and pos < len(hits):
            window = hits[pos : pos + (n - len(ranked))]
            pos += len(window)
            got = {
                h.id: h.payload
                for h in self.store.get_points(collection, [cid for cid, _, _ in window], PAYLOAD_FIELDS)
            }
            for hit in window:
                if hit[0] in got:
                    ranked.append(hit)
                    payloads[hit[0]] = got[hit[0]]
        return ranked, payloads


def _docs(contexts: list[Context]):
    """Contexts as tracing's documents: chunk id, score, text, the document and its stage ranks."""
    for c in contexts:
        meta = {
            "doc_id": c.doc_id,
            "title": c.title,
            "rank": c.rank,
            "stages": {n: h.rank for n, h in c.stages.items()},
        }
        yield c.chunk_id, c.score, c.text, meta


def _hits(hits: list[tuple[str, str, float]], texts: dict[str, str | None]):
    for rank, (cid, doc_id, score) in enumerate(hits, 1):
        yield cid, score, texts.get(cid), {"doc_id": doc_id, "rank": rank}


def stage_requests(p: RetrievalParams, dense, sparse, with_payload=STAGE_FIELDS) -> tuple[list[str], list[QuerySpec]]:
    """The stage names and their Qdrant requests, run in one batch: sparse and dense candidates (those given),
    and in hybrid mode their fusion, as long as the candidate lists so the audit sees what fusion ranked low."""
    names, requests = [], []
    for name, vec in (("sparse", sparse), ("dense", dense)):
        if vec is not None:
            names.append(name)
            requests.append(QuerySpec(**{name: vec}, limit=p.candidates, filters=p.filters, with_payload=with_payload))
    if p.mode == "hybrid":
        names.append("fused")
        requests.append(
            QuerySpec(
                dense=dense,
                sparse=sparse,
                fusion=p.fusion,
                rrf_k=p.rrf_k,
                weights=p.weights,
                limit=p.candidates,
                candidates=p.candidates,
                filters=p.filters,
                with_payload=with_payload,
            )
        )
    return names, requests


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)
