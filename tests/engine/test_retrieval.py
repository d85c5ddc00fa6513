"""Retrieval stages on a real store: RRF scores checked by hand, stage ranks, the rerank stage's plumbing."""

from __future__ import annotations

import pytest

from core.errors import InvalidRequestError
from core.sparse import Bm25Encoder
from core.store import open_store
from engine.retrieval import Retriever
from ingest.pipeline import Ingestor
from tests.conftest import params, scifact_docs, write_corpus


class KeywordReranker:
    """A stand-in reranker, named as such (no cross-encoder ships offline here): it scores a passage by
    how often a keyword occurs, so the expected order is known and the stage's plumbing can be checked."""

    name = "stand-in:keyword"

    def __init__(self, word: str):
        self.word = word

    def score(self, question, passages):
        return [p.lower().count(self.word) + 1e-3 * len(p) for p in passages]


@pytest.fixture(scope="module")
def retriever(tmp_path_factory, embedder):
    from core.settings import Settings

    tmp = tmp_path_factory.mktemp("retrieval")
    settings = Settings(data_dir=tmp / "data", _env_file=None)
    corpus = write_corpus(tmp / "corpus.jsonl", scifact_docs(80))
    store = open_store(settings)
    Ingestor(settings, store, embedder).run([corpus], "sci")
    yield Retriever(store, embedder, Bm25Encoder.from_settings(settings))
    store.close()


def test_rrf_scores_match_hand_computation(retriever):
    for k in (2, 60):
        res = retriever.retrieve(
            "sci", "cancer cells and tumour growth", params(fusion="rrf", rrf_k=k, top_k=10, candidates=40)
        )
        sparse, dense = res.stages["sparse"], res.stages["dense"]
        for cid, _, score in res.stages["fused"].hits[:10]:
            expected = sum(1 / (k + h.rank - 1) for h in (sparse.rank_of(cid), dense.rank_of(cid)) if h)
            assert score == pytest.approx(expected, rel=1e-5)


def test_weighted_rrf_by_hand(retriever):
    res = retriever.retrieve(
        "sci", "cancer cells", params(fusion="rrf", rrf_k=10, weights=(1.0, 3.0), top_k=5, candidates=40)
    )
    for cid, _, score in res.stages["fused"].hits[:5]:
        terms = [(res.stages["sparse"].rank_of(cid), 1.0), (res.stages["dense"].rank_of(cid), 3.0)]
        expected = sum(1 / (h.rank / w + 10 - 1) for h, w in terms if h)
        assert score == pytest.approx(expected, rel=1e-5)


def test_contexts_carry_every_stage(retriever):
    res = retriever.retrieve("sci", "stem cells", params(top_k=5, candidates=50))
    assert [c.rank for c in res.contexts] == [1, 2, 3, 4, 5]
    for c in res.contexts:
        assert c.stages["fused"].rank == c.rank
        for name in ("sparse", "dense"):
            if name in c.stages:
                assert res.stages[name].rank_of(c.chunk_id) == c.stages[name]
        assert c.text and c.doc_id and c.end > c.start


def test_rerank_stage_plumbing(retriever):
    retriever.reranker = KeywordReranker("cell")
    try:
        p = params(top_k=5, candidates=50, rerank=True, rerank_candidates=20)
        res = retriever.retrieve("sci", "stem cells", p)
    finally:
        retriever.reranker = None
    rerank = res.stages["rerank"]
    assert len(rerank.hits) == 20
    fused_top20 = {cid for cid, _, _ in res.stages["fused"].hits[:20]}
    assert {cid for cid, _, _ in rerank.hits} == fused_top20  # it reorders fusion's top 20, nothing else
    counts = [c.text.lower().count("cell") for c in res.contexts]
    assert counts == sorted(counts, reverse=True) and counts[0] > 0
    assert all(c.stages["rerank"].rank == c.rank for c in res.contexts)
    assert "rerank" in res.timings_ms


def test_rerank_without_reranker_is_refused(retriever):
    with pytest.raises(InvalidRequestError, match="no reranker"):
        retriever.retrieve("sci", "x", params(rerank=True))
