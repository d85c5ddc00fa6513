"""Per-file bounds (issue 8): text, chunks and chunk+embed time. A file over one fails alone, fast, with the
limit and its setting named; what it had written is rolled back; the other files of the job still go in."""

from __future__ import annotations

import time

from ingest.chunking import ChunkerSettings, chunk_text, sections
from ingest.pipeline import Ingestor
from tests.helpers.files import make_folder


def big_docx(path, chars: int):
    """A .docx of `chars` characters of varied prose in paragraphs under headings (compresses well, like the
    108 KB file holding 2 MB of text that took the service 225 s)."""
    import docx

    words = "bridge river load steel cable tension span arch beam truss concrete design engineer".split()
    d, size, i = docx.Document(), 0, 0
    while size < chars:
        if i % 40 == 0:
            d.add_heading(f"Part {i // 40}", level=2)
        text = " ".join(f"{words[(i * 7 + k) % len(words)]}{k % 9}" for k in range(60)).capitalize() + "."
        d.add_paragraph(" ".join([text] * 4))
        size += 4 * len(text) + 5
        i += 1
    d.save(path)
    return path


def chunks_of(store, doc_id):
    return {h.id: h.payload["text"] for h in store.scroll("test", ["doc_id", "text"], {"doc_id": doc_id})}


def test_a_docx_of_2_mb_text_over_the_text_limit_fails_fast_alone(tmp_path, settings, store, embedder):
    docs = make_folder(tmp_path)
    big_docx(docs / "huge.docx", 2_000_000)
    limited = settings.model_copy(update={"max_file_chars": 1_000_000})
    t0 = time.monotonic()
    report = Ingestor(limited, store, embedder).run([docs], "test")
    assert time.monotonic() - t0 < 90  # parse + 5 small files; the 2 MB are never chunked or embedded
    [failed] = report.failed
    assert failed.path == "docs/huge.docx"
    assert "over the limit of 1,000,000 (RAG_MAX_FILE_CHARS)" in failed.reason and "characters" in failed.reason
    assert report.count("added") == 5 and chunks_of(store, "docs/huge.docx") == {}


def test_chunking_2_mb_is_linear_time(embedder):
    """Chunking was quadratic in headings x code fences (sections() alone: minutes on 2 MB); now linear."""
    text = "\n\n".join(f"## Part {i}\n\nSome text here. More text.\n\n```\ncode {i}\n```" for i in range(40_000))
    assert len(text) > 2_000_000
    t0 = time.monotonic()
    assert len(sections(text)) == 40_000
    assert time.monotonic() - t0 < 15  # 187 s before the fix, under 1 s after
    chunks = chunk_text(text, embedder, ChunkerSettings())
    assert len(chunks) == 40_000 and chunks[-1].heading_path == ("Part 39999",)
    assert time.monotonic() - t0 < 120  # 175 s before the fix, 16 s after, on 2 shared cores


def test_a_file_over_the_chunk_limit_fails_alone(tmp_path, settings, store, embedder):
    docs = make_folder(tmp_path)
    (docs / "long.md").write_text("\n\n".join(f"# Section {i}\n\nSentence number {i} stands alone." for i in range(50)))
    limited = settings.model_copy(update={"max_file_chunks": 20})
    report = Ingestor(limited, store, embedder).run([docs], "test")
    assert [(f.path, f.reason) for f in report.failed] == [
        ("docs/long.md", "the file makes more than 20 chunks (RAG_MAX_FILE_CHUNKS)")
    ]
    assert report.count("added") == 5


def test_a_file_over_its_time_limit_is_rolled_back_and_its_last_version_stays(tmp_path, settings, store, embedder):
    docs = make_folder(tmp_path)
    ingestor = Ingestor(settings, store, embedder)
    ingestor.run([docs], "test")
    before = chunks_of(store, "docs/notes.txt")
    # notes.txt grows to ~800 chunks: written 8 at a time, with 2 s for all, it cannot finish.
    (docs / "notes.txt").write_text(
        "\n\n".join(f"Paragraph {i} says tea is brewed at {i} degrees." for i in range(10_000))
    )
    (docs / "new.txt").write_text("A new small file.")
    slow = settings.model_copy(update={"file_embed_timeout_s": 2.0, "ingest_batch_chunks": 8})
    report = Ingestor(slow, store, embedder).run([docs], "test", sync=True)
    [failed] = report.failed
    assert failed.path == "docs/notes.txt" and "longer than 2 s (RAG_FILE_EMBED_TIMEOUT_S)" in failed.reason
    assert chunks_of(store, "docs/notes.txt") == before  # rolled back: the old version, whole, nothing more
    assert report.count("added") == 1 and report.count("unchanged") == 4 and report.documents_deleted == 0
    assert report.chunks_embedded == len(chunks_of(store, "docs/new.txt")) == 1


def test_a_stop_mid_file_rolls_it_back(tmp_path, settings, store, embedder):
    docs = make_folder(tmp_path)
    (docs / "zz-long.txt").write_text("\n\n".join(f"Paragraph {i} is about bridges." for i in range(2000)))

    def stop():  # once two batches of zz-long.txt are in
        return "cancelled" if store.count("test", {"doc_id": "docs/zz-long.txt"}) >= 16 else None

    small = settings.model_copy(update={"ingest_batch_chunks": 8})
    report = Ingestor(small, store, embedder).run([docs], "test", stop=stop)
    assert report.stopped == "cancelled" and report.status == "partial"
    assert [(f.path, f.status) for f in report.files if f.status != "added"] == [("docs/zz-long.txt", "skipped")]
    assert chunks_of(store, "docs/zz-long.txt") == {}
    assert report.points == store.count("test") == report.chunks_embedded


def test_too_little_free_disk_stops_before_a_write_with_disk_full(tmp_path, settings, store, embedder, monkeypatch):
    """RAG_INGEST_MIN_FREE_MB: a batch that would leave less free is not written; what was written stays whole
    (the disk really filling: tests/service/test_fault_disk.py)."""
    import shutil
    from collections import namedtuple

    import pytest

    from ingest.report import DiskFull

    docs = make_folder(tmp_path)
    (docs / "zz-long.txt").write_text("\n\n".join(f"Paragraph {i} is about bridges." for i in range(2000)))
    usage = namedtuple("usage", "total used free")
    writes = []
    real = store.upsert

    def upsert(name, points):  # the disk "fills" after two batches
        writes.append(len(points))
        real(name, points)

    monkeypatch.setattr(store, "upsert", upsert)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 0, 10**12 if len(writes) < 2 else 60 * 10**6))
    small = settings.model_copy(update={"ingest_batch_chunks": 8})
    with pytest.raises(DiskFull) as caught:
        Ingestor(small, store, embedder).run([docs], "test")
    assert caught.value.code == "disk_full" and "60.0 MB free" in str(caught.value)
    assert len(writes) == 2 and store.count("test") == sum(writes)  # no write after the check said no
