"""A job killed with SIGKILL mid-way, then run again, ends with exactly the chunks a clean run gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from core.store import open_store
from ingest.chunking import chunk_text
from ingest.parsers import parse_file
from ingest.pipeline import Ingestor
from tests.conftest import scifact_docs, write_corpus


def test_sigkill_mid_ingest_then_rerun(tmp_path, settings, embedder):
    corpus = write_corpus(tmp_path / "corpus.jsonl", scifact_docs(150))
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(settings.data_dir),
        "RAG_COLLECTION": "test",
        "RAG_INGEST_BATCH_CHUNKS": "16",  # many small writes, so the kill lands between two of them
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "ingest", str(corpus), "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The CLI logs one progress line per batch written; kill after the third.
        written = 0
        for line in proc.stderr:
            written += line.startswith("progress ")
            if written == 3:
                break
        assert proc.poll() is None, "the job finished before it could be killed; make the corpus bigger"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    ingestor_settings = settings.model_copy(update={"ingest_batch_chunks": 16})
    docs = parse_file(corpus, corpus.name, 10**9)
    with open_store(settings) as store:
        ingestor = Ingestor(ingestor_settings, store, embedder)
        partial = store.count("test")
        chunks = {d.doc_id: chunk_text(d.text, embedder, ingestor.chunker) for d in docs}
        n_expected = sum(len(c) for c in chunks.values())
        assert 0 < partial < n_expected, f"the kill should land mid-job ({partial} of {n_expected})"

        report = ingestor.run([corpus], "test")
        assert not report.failed
        assert report.chunks_embedded == n_expected - partial  # nothing written before the kill is redone
        # The point ids as the rerun made them: it adopted the BM25 avg_len the killed job measured and recorded.
        expected = {pid for d in docs for pid in ingestor.chunk_ids(d, chunks[d.doc_id])}
        stored = store.scroll("test", ["doc_id", "position", "n_chunks"])
        ids = [h.id for h in stored]
        assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected

        again = ingestor.run([corpus], "test")
        assert again.chunks_embedded == 0 and again.points == len(expected)
