"""BM25 length normalisation follows the collection: avg_len measured on its first ingest, then kept."""

from __future__ import annotations

import pytest

from core.errors import CollectionMismatchError
from core.sparse import DEFAULT_AVG_LEN
from ingest.chunking import chunk_text
from ingest.pipeline import Ingestor

SHORT = "Cats purr softly. Dogs bark loudly at night.\n"
LONG = " ".join(f"Sentence {i} talks about tidal energy, turbines and estuaries in coastal regions." for i in range(60))


def test_avg_len_is_measured_on_the_first_file_then_kept(tmp_path, settings, store, embedder):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a_long.md").write_text(LONG)
    first = Ingestor(settings, store, embedder)
    first.run([tmp_path / "docs"], "c")
    chunks = chunk_text(LONG, embedder, first.chunker)
    measured = first.bm25.measure_avg_len([c.text for c in chunks])
    assert store.get_spec("c").sparse["avg_len"] == measured and abs(measured - DEFAULT_AVG_LEN) > 10
    # A later ingest (a new process: a fresh Ingestor) adopts the collection's value, whatever its first file.
    (tmp_path / "docs" / "b_short.md").write_text(SHORT)
    again = Ingestor(settings, store, embedder)
    report = again.run([tmp_path / "docs"], "c")
    assert again.bm25.avg_len == measured
    assert [f.status for f in report.files] == ["unchanged", "added"]  # same point ids: nothing rewritten
    # An explicit setting that disagrees with the collection is refused, not silently mixed.
    with pytest.raises(CollectionMismatchError, match="avg_len"):
        Ingestor(settings.model_copy(update={"bm25_avg_len": 80.0}), store, embedder).run([tmp_path / "docs"], "c")


def test_explicit_avg_len_wins_for_a_new_collection(tmp_path, settings, store, embedder):
    (tmp_path / "a.md").write_text(LONG)
    Ingestor(settings.model_copy(update={"bm25_avg_len": 42.0}), store, embedder).run([tmp_path / "a.md"], "d")
    assert store.get_spec("d").sparse["avg_len"] == 42.0
