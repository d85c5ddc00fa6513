"""Identity is relative (issue 8): a folder moved or mounted elsewhere re-ingests unchanged, --sync works after
the move, no server path reaches the store or a report, and collections with absolute sources still match."""

from __future__ import annotations

import json
import shutil

from ingest.documents import Document
from tests.conftest import scifact_docs, write_corpus
from tests.helpers.files import make_folder


def stored(store, collection="test"):
    return {h.id: h.payload for h in store.scroll(collection, ["doc_id", "source", "text"])}


def test_moved_folder_reingests_unchanged_and_stores_no_path(tmp_path, ingestor, store):
    docs = make_folder(tmp_path / "a")
    first = ingestor.run([docs], "test")
    assert first.count("added") == 5
    before = stored(store)
    assert {p["source"] for p in before.values()} == {p["doc_id"] for p in before.values()}
    assert all(not p["source"].startswith("/") for p in before.values())
    assert str(tmp_path) not in json.dumps(first.to_dict())
    assert sorted(f.path for f in first.files)[0] == "docs/cats.md"

    moved = tmp_path / "b" / "docs"
    moved.parent.mkdir()
    shutil.move(str(docs), str(moved))
    again = ingestor.run([moved], "test")
    assert again.count("unchanged") == 5 and not again.failed
    assert again.chunks_embedded == 0 and again.documents_deleted == 0 and again.chunks_deleted == 0
    assert stored(store) == before


def test_sync_after_a_move_deletes_exactly_the_removed_file(tmp_path, ingestor, store):
    docs = make_folder(tmp_path / "a")
    ingestor.run([docs], "test")
    before = stored(store)
    notes = {k for k, p in before.items() if p["doc_id"] == "docs/notes.txt"}
    moved = tmp_path / "mnt" / "docs"
    moved.parent.mkdir()
    shutil.move(str(docs), str(moved))
    (moved / "notes.txt").unlink()
    report = ingestor.run([moved], "test", sync=True)
    assert report.documents_deleted == 1 and report.chunks_deleted == len(notes) > 0
    assert report.chunks_embedded == 0 and report.count("unchanged") == 4
    assert stored(store) == {k: v for k, v in before.items() if k not in notes}


def test_sync_is_scoped_to_the_roots_given(tmp_path, ingestor, store):
    docs = make_folder(tmp_path / "a")
    other = tmp_path / "elsewhere" / "other"
    other.mkdir(parents=True)
    (other / "x.txt").write_text("Another root entirely.")
    corpus = write_corpus(tmp_path / "corpus.jsonl", scifact_docs(3))
    ingestor.run([docs, other, corpus], "test")
    (docs / "notes.txt").unlink()
    report = ingestor.run([docs], "test", sync=True)
    assert report.documents_deleted == 1
    ids = {p["doc_id"] for p in stored(store).values()}
    assert "other/x.txt" in ids and {r["_id"] for r in scifact_docs(3)} <= ids and "docs/notes.txt" not in ids


def test_two_folders_of_the_same_name_in_one_job_conflict_by_relative_source(tmp_path, ingestor, store):
    a, b = tmp_path / "x" / "docs", tmp_path / "y" / "docs"
    for d in (a, b):
        d.mkdir(parents=True)
        (d / "same.txt").write_text(f"text of {d.parent.name}")
    (b / "only-b.txt").write_text("Only in the second folder.")
    report = ingestor.run([a, b], "test")
    assert report.count("added") == 2 and len(report.failed) == 1
    failed = report.failed[0]
    assert failed.path == "docs/same.txt" and "same relative source 'docs/same.txt'" in failed.reason
    assert str(tmp_path) not in failed.reason
    texts = {p["doc_id"]: p["text"] for p in stored(store).values()}
    assert texts["docs/same.txt"] == "text of x"  # the first one given stays


def test_a_document_id_owned_by_another_source_is_refused_naming_it(tmp_path, ingestor, store):
    note = tmp_path / "files" / "notes.txt"
    note.parent.mkdir()
    note.write_text("Tea is brewed with water at ninety degrees.")
    ingestor.run([note], "test")
    corpus = write_corpus(tmp_path / "c.jsonl", [{"_id": "notes.txt", "title": "", "text": "A record."}])
    report = ingestor.run([corpus], "test")
    assert [f.reason for f in report.failed] == ["document id 'notes.txt' already belongs to notes.txt"]


def test_a_different_corpus_with_the_same_name_does_not_replace_the_first(tmp_path, ingestor, store):
    rows = scifact_docs(10)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = write_corpus(tmp_path / "one" / "corpus.jsonl", rows[:5])
    second = write_corpus(tmp_path / "two" / "corpus.jsonl", rows[5:])
    ingestor.run([first], "test")
    report = ingestor.run([second], "test")
    assert report.count("failed") == 1 and report.documents_deleted == 0
    reason = report.failed[0].reason
    assert "5 documents in the collection come from another file with the same relative source" in reason
    assert {p["doc_id"] for p in stored(store).values()} == {r["_id"] for r in rows[:5]}
    # An edited corpus (some records in common) is still the same file: its lost records go.
    edited = ingestor.run([write_corpus(second, rows[:3])], "test")
    assert edited.documents_unchanged == 3 and edited.documents_deleted == 2


def write_old_style(ingestor, store, docs_dir):
    """What versions before issue 8 wrote: the same ids and chunks, with absolute `source` payloads."""
    from ingest.identity import discover
    from ingest.parsers import parse_file
    from ingest.report import IngestReport

    store.ensure_collection("test", ingestor.spec)
    state = store.index_state("test")
    for path, source, skip in discover([docs_dir]):
        for doc in parse_file(path, source, 10**9):
            old = Document(doc.doc_id, doc.title, doc.text, str(path), doc.doc_type, doc.metadata, doc.page_starts)
            ingestor.writer.write("test", [ingestor._plan(old, state)], IngestReport("test"), lambda *a: None)
    store.flush()


def test_a_collection_with_absolute_sources_migrates_without_re_embedding(tmp_path, ingestor, store):
    docs = make_folder(tmp_path / "old")
    write_old_style(ingestor, store, docs)
    before = stored(store)
    assert all(p["source"].startswith(str(tmp_path)) for p in before.values())
    moved = tmp_path / "new" / "docs"
    moved.parent.mkdir()
    shutil.move(str(docs), str(moved))
    report = ingestor.run([moved], "test")
    assert report.count("unchanged") == 5 and report.chunks_embedded == 0 and not report.failed
    # --sync after the move still finds the removed file's document by its old absolute source.
    (moved / "cats.md").unlink()
    synced = ingestor.run([moved], "test", sync=True)
    assert synced.documents_deleted == 1 and synced.chunks_embedded == 0
    assert "docs/cats.md" not in {p["doc_id"] for p in stored(store).values()}
    # An edited file is rewritten with its relative source.
    (moved / "notes.txt").write_text("Tea is brewed with water at eighty degrees.")
    edited = ingestor.run([moved], "test")
    assert edited.count("updated") == 1
    assert {p["source"] for p in stored(store).values() if p["doc_id"] == "docs/notes.txt"} == {"docs/notes.txt"}
