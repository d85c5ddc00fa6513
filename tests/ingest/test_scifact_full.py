"""All of SciFact through the pipeline, twice. Slow (about 8 minutes on 2 cores): marked, and CI runs it."""

from __future__ import annotations

import pytest

from ingest.pipeline import Ingestor
from rag.store import open_store
from tests.conftest import SCIFACT, scifact_docs


@pytest.mark.slow
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
