"""The ingest job on a real embedded Qdrant store with the real model: idempotent, edits, sync, deletes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import CollectionMismatchError, StoreLockedError
from core.store import open_store
from ingest.pipeline import Ingestor
from tests.conftest import scifact_docs, write_corpus
from tests.helpers.files import make_folder

RAG = [sys.executable, "-m", "cli"]


def snapshot(store, collection="test"):
    return {
        h.id: h.payload for h in store.scroll(collection, ["doc_id", "source", "text", "start", "end", "content_hash"])
    }


def test_folder_ingest_is_idempotent(tmp_path, ingestor, store):
    docs = make_folder(tmp_path)
    first = ingestor.run([docs], "test")
    assert first.count("added") == 5 and not first.failed
    ids = {h.payload["doc_id"] for h in store.scroll("test", ["doc_id"])}
    assert ids == {"docs/cats.md", "docs/notes.txt", "docs/sub/bridges.html", "docs/sub/volcano.pdf", "docs/solar.docx"}
    before = snapshot(store)

    second = ingestor.run([docs], "test")
    assert second.chunks_embedded == 0 and second.chunks_deleted == 0
    assert second.count("unchanged") == 5 and second.points == first.points
    assert snapshot(store) == before


def test_payload_carries_offsets_headings_and_pages(tmp_path, ingestor, store):
    docs = make_folder(tmp_path)
    ingestor.run([docs], "test")
    hits = store.scroll("test", ["doc_id", "text", "start", "end", "heading_path", "page", "position", "n_chunks"])
    food = next(h for h in hits if "fish" in h.payload["text"])
    assert food.payload["heading_path"] == ["Cats", "Food"]
    source_text = (docs / "cats.md").read_text()
    assert source_text[food.payload["start"] : food.payload["end"]] == food.payload["text"]
    lava = next(h for h in hits if "basalt" in h.payload["text"])
    assert lava.payload["page"] == 1  # both pages fit one chunk, which starts on page 1


def test_edit_replaces_exactly_that_files_chunks(tmp_path, ingestor, store):
    docs = make_folder(tmp_path)
    ingestor.run([docs], "test")
    before = snapshot(store)
    (docs / "cats.md").write_text("# Cats\n\nCats purr when content.\n\n## Food\n\nCats eat fish and meat.")
    report = ingestor.run([docs], "test")
    assert report.count("updated") == 1 and report.count("unchanged") == 4
    after = snapshot(store)
    others = lambda snap: {k: v for k, v in snap.items() if v["doc_id"] != "docs/cats.md"}  # noqa: E731
    assert others(after) == others(before)
    cats = [v["text"] for v in after.values() if v["doc_id"] == "docs/cats.md"]
    assert any("purr" in t for t in cats) and not any("sleep" in t for t in cats)
    assert report.chunks_deleted == sum(1 for v in before.values() if v["doc_id"] == "docs/cats.md")


def test_sync_removes_deleted_files_but_not_failed_ones(tmp_path, ingestor, store):
    docs = make_folder(tmp_path)
    ingestor.run([docs], "test")
    (docs / "notes.txt").unlink()
    (docs / "cats.md").write_bytes(b"")  # now broken: its stored chunks must stay
    without_sync = ingestor.run([docs], "test")
    assert without_sync.documents_deleted == 0
    report = ingestor.run([docs], "test", sync=True)
    assert report.documents_deleted == 1 and [f.reason for f in report.failed] == ["empty file"]
    ids = {h.payload["doc_id"] for h in store.scroll("test", ["doc_id"])}
    assert "docs/notes.txt" not in ids and "docs/cats.md" in ids


def test_sync_leaves_other_roots_alone(tmp_path, ingestor, store):
    docs = make_folder(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("Another root entirely.")
    ingestor.run([docs, other], "test")
    report = ingestor.run([other], "test", sync=True)
    assert report.documents_deleted == 0 and store.count("test", {"doc_id": "docs/cats.md"}) > 0


def test_delete_by_document_id(tmp_path, ingestor, store):
    docs = make_folder(tmp_path)
    ingestor.run([docs], "test")
    n = store.count("test", {"doc_id": "docs/cats.md"})
    assert ingestor.delete_documents("test", ["docs/cats.md"]) == n > 0
    assert store.count("test", {"doc_id": "docs/cats.md"}) == 0


def test_bad_files_fail_alone(tmp_path, ingestor, store):
    docs = make_folder(tmp_path)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7 truncated")
    (docs / "empty.md").write_text("")
    (docs / "photo.png").write_bytes(b"\x89PNG\r\n")
    report = ingestor.run([docs, tmp_path / "missing.txt"], "test")
    assert report.count("added") == 5 and report.count("skipped") == 1
    reasons = {Path(f.path).name: f.reason for f in report.failed}
    assert set(reasons) == {"broken.pdf", "empty.md", "missing.txt"}
    assert "cannot read" in reasons["missing.txt"]


def test_beir_corpus_edit_and_removed_record(tmp_path, ingestor, store):
    rows = scifact_docs(12)
    corpus = write_corpus(tmp_path / "corpus.jsonl", rows)
    ingestor.run([corpus], "test")
    assert {h.payload["doc_id"] for h in store.scroll("test", ["doc_id"])} == {r["_id"] for r in rows}
    rows[0] = {**rows[0], "text": rows[0]["text"] + " Added sentence."}
    write_corpus(corpus, rows[:-1])
    report = ingestor.run([corpus], "test")
    assert report.documents_updated == 1 and report.documents_unchanged == 10 and report.documents_deleted == 1
    assert store.count("test", {"doc_id": rows[-1]["_id"]}) == 0


def test_same_document_id_from_two_files_is_refused(tmp_path, ingestor):
    a, b = tmp_path / "a" / "docs", tmp_path / "b" / "docs"
    for d in (a, b):
        d.mkdir(parents=True)
        (d / "x.txt").write_text(f"text of {d}")
    report = ingestor.run([a, b], "test")
    assert report.count("added") == 1 and "same relative source 'docs/x.txt'" in report.failed[0].reason


def test_other_model_settings_are_refused(tmp_path, settings, store, embedder):
    docs = make_folder(tmp_path)
    Ingestor(settings, store, embedder).run([docs], "test")
    other = settings.model_copy(update={"chunk_max_tokens": 120})
    with pytest.raises(CollectionMismatchError, match="chunker.max_tokens: collection has 200, settings give 120"):
        Ingestor(other, store, embedder).run([docs], "test")


def _cli(args, data_dir, **kw):
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "RAG_COLLECTION": "test"}
    return subprocess.run(RAG + args, env=env, capture_output=True, text=True, timeout=300, **kw)


def test_cli_json_report_and_exit_codes(tmp_path, settings):
    docs = make_folder(tmp_path)
    ok = _cli(["ingest", str(docs), "--json"], settings.data_dir)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["summary"] == {"added": 5, "updated": 0, "unchanged": 0, "failed": 0, "skipped": 0, "seen": 5}
    (docs / "bad.pdf").write_bytes(b"not a pdf")
    bad = _cli(["ingest", str(docs)], settings.data_dir)
    assert bad.returncode == 1 and "bad.pdf" in bad.stdout and "5 unchanged" in bad.stdout


def test_second_process_is_told_the_store_is_owned(tmp_path, settings, store):
    docs = make_folder(tmp_path)
    store.list_collections()  # this process owns the embedded store now
    res = _cli(["ingest", str(docs)], settings.data_dir)
    assert res.returncode == 2
    assert "in use by another process" in res.stderr and f"pid {os.getpid()}" in res.stderr
    assert "Traceback" not in res.stderr


def test_store_lock_in_process(settings, store):
    with pytest.raises(StoreLockedError):
        open_store(settings)


def test_a_parse_over_its_time_limit_fails_that_file_alone(tmp_path, settings, store, embedder):
    from reportlab.pdfgen import canvas

    docs = make_folder(tmp_path)
    c = canvas.Canvas(str(docs / "slow.pdf"))  # one page of 80,000 text runs: pypdf needs ~5-10 s
    for i in range(80_000):
        c.drawString(10 + (i % 50) * 10, 10 + (i // 50) % 80 * 10, f"w{i}")
    c.save()
    slow = settings.model_copy(update={"parse_timeout_s": 3.0})
    report = Ingestor(slow, store, embedder).run([docs], "test")
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert list(failed) == ["slow.pdf"] and "longer than 3 s" in failed["slow.pdf"]
    # The worker was replaced: the files after it (solar.docx, sub/...) still went in.
    assert report.count("added") == 5


def test_a_parser_worker_that_dies_fails_that_file_alone(tmp_path):
    """The worker killed mid-parse (as the OOM killer would): that file fails at once, the next parses."""
    import os
    import signal
    import threading
    import time

    from reportlab.pdfgen import canvas

    from ingest.isolation import IsolatedParser

    slow = tmp_path / "slow.pdf"
    c = canvas.Canvas(str(slow))
    for i in range(80_000):
        c.drawString(10 + (i % 50) * 10, 10 + (i // 50) % 80 * 10, f"w{i}")
    c.save()
    ok = tmp_path / "ok.txt"
    ok.write_text("A small and healthy file.")
    parser = IsolatedParser(timeout_s=120, memory_mb=4096)
    outcome = {}

    def run():
        try:
            parser.parse(slow, "slow", 10**9)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    try:
        parser.parse(ok, "ok", 10**9)  # the worker is up
        t = threading.Thread(target=run)
        t.start()
        time.sleep(1.0)
        workers = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_worker_of(int(p), os.getpid())]
        assert workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        t.join(timeout=60)
        assert time.monotonic() - started < 30  # not the 120 s time limit
        assert "died" in str(outcome["error"])
        assert parser.parse(ok, "ok", 10**9)[0].text == "A small and healthy file."
    finally:
        parser.close()


def _is_worker_of(pid: int, parent: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False
    return int(stat[1]) == parent and b"spawn_main" in cmd
