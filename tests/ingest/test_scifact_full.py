"""All of SciFact through the pipeline, twice, then audited. Slow (about 8 minutes on 2 cores): marked, and
CI runs it."""

from __future__ import annotations

import pytest

from core.sparse import Bm25Encoder
from core.store import open_store
from diagnostics.audit.golden import Case, Expected, GoldenSet, import_beir
from diagnostics.audit.run import Auditor
from engine.answer import Answerer
from engine.retrieval import Retriever
from ingest.pipeline import Ingestor
from tests.conftest import SCIFACT, params, scifact_docs


@pytest.mark.slow
@pytest.mark.full
@pytest.mark.timeout(3600)
def test_scifact_ingests_and_second_run_embeds_nothing(settings, embedder):
    scifact_docs(1)  # skips when the data is missing
    with open_store(settings) as store:
        ingestor = Ingestor(settings, store, embedder)
        first = ingestor.run([SCIFACT / "corpus.jsonl"], "scifact")
        assert first.documents_added == 5183 and not first.failed
        assert first.points == first.chunks_embedded == len(store.scroll("scifact", ["doc_id"]))
        docs = {h.payload["doc_id"] for h in store.scroll("scifact", ["doc_id"])}
        assert len(docs) == 5183

        second = ingestor.run([SCIFACT / "corpus.jsonl"], "scifact")
        assert second.chunks_embedded == 0 and second.chunks_deleted == 0
        assert second.documents_unchanged == 5183 and second.points == first.points

        # The retrieval-only audit of SciFact test on this collection gives the benchmark's figure for
        # the same (default) settings: benchmarks/retrieval_api.py measured nDCG@10 0.7347 (hybrid DBSF).
        golden = GoldenSet(
            [
                Case(r["id"], r["question"], tuple(Expected(**e) for e in r["expected"]))
                for r in import_beir(SCIFACT / "queries.jsonl", SCIFACT / "qrels" / "test.tsv")
            ]
        )
        retriever = Retriever(store, embedder, Bm25Encoder.from_settings(settings))
        report = Auditor(Answerer(retriever, None), store).run(golden, "scifact", params(), (10,))
        assert report["overall"]["ndcg@10"]["mean"] == pytest.approx(0.7347, abs=0.002)
