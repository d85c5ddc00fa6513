"""The disk filling during an ingest (issue 20's fault suite). The data dir lies on a small tmpfs the test mounts
(root only; skipped elsewhere) and fills with a file of its own while `rag ingest` writes:

1. with the guard (RAG_INGEST_MIN_FREE_MB, default 64 MB kept free): the ingest stops before the write that
   would not fit, exit status 2 and one line `error (disk_full): ... MB free ...`;
2. with the guard off and the disk filled to its last few KB: what the embedded store's memory-mapped files do
   then (the process dies of SIGBUS: why the guard exists);
3. space again (the filler removed): the rerun ends with exactly the points a clean ingest gives, each chunk
   once, nothing from the failed runs half-written or lost.

`-s` prints the figures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings
from core.store import open_store
from ingest.chunking import chunk_text
from ingest.parsers import parse_file
from ingest.pipeline import Ingestor
from tests.conftest import scifact_docs, write_corpus

pytestmark = [pytest.mark.fault, pytest.mark.slow]  # three `rag ingest` runs: ~1-4 min

SIZE_MB = 192  # the small filesystem (the store takes ~50 MB of it: two 32 MB write-ahead-log segments)
DOCS = 60


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path, leave_bytes: int) -> Path:
    """A file taking all the free space of `folder`'s filesystem but `leave_bytes`."""
    filler = folder / "filler"
    size = max(0, shutil.disk_usage(folder).free - leave_bytes)
    with open(filler, "ab") as fh:
        block = b"\xff" * (1 << 20)
        while size > 0:
            fh.write(block[: min(size, len(block))])
            size -= len(block)
    return filler


def ingest(corpus: Path, data: Path, filler_at: int | None = None, leave: int = 0, **env) -> tuple[int, str, int]:
    """`rag ingest` on `corpus`; after its `filler_at`-th written batch, fill the disk but `leave` bytes. Returns
    (exit status, stderr's last lines, batches written)."""
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(data),
        "RAG_COLLECTION": "test",
        "RAG_INGEST_BATCH_CHUNKS": "16",
        "COLUMNS": "300",  # one error line, unwrapped
        **env,
    }
    cmd = [sys.executable, "-m", "cli", "ingest", str(corpus), "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    written, tail = 0, []
    for line in proc.stderr:
        tail = (tail + [line.rstrip()])[-5:]
        if line.startswith("progress "):
            written += 1
            if written == filler_at:
                fill(data.parent, leave)
    return proc.wait(timeout=600), "\n".join(tail), written


def stored(data: Path) -> list:
    settings = Settings(data_dir=data, collection="test", _env_file=None)
    with open_store(settings) as store:
        return store.scroll("test", ["doc_id", "position", "n_chunks"]) if "test" in store.list_collections() else []


def test_disk_full_during_ingest_then_rerun_repairs(tmp_path, small_disk, embedder):
    corpus = write_corpus(tmp_path / "corpus.jsonl", scifact_docs(DOCS))
    data = small_disk / "data"

    # 1. The guard: 40 MB left, under the 64 MB it keeps free: a clean stop with its reason.
    rc, err, batches = ingest(corpus, data, filler_at=2, leave=40 * 1024 * 1024)
    assert rc == 2, err
    assert "error (disk_full)" in err and "MB free" in err and "run the ingest again" in err, err
    (small_disk / "filler").unlink()  # before the store is opened here: opening it writes too
    guarded = len(stored(data))

    # 2. No guard, the disk filled to its last 64 KB: the store's memory-mapped writes meet a full disk.
    rc_raw, err_raw, batches_raw = ingest(corpus, data, filler_at=1, leave=64 * 1024, RAG_INGEST_MIN_FREE_MB="0")
    # 2b. Started on a disk already full to the last byte: one clear line and exit 2, not a traceback (opening
    # the store writes its owner file first).
    fill(small_disk, 0)
    rc_full, err_full, _ = ingest(corpus, data)
    assert rc_full == 2 and "error (disk_full)" in err_full and "Traceback" not in err_full, err_full
    (small_disk / "filler").unlink()
    raw = len(stored(data))

    # 3. Space again: the rerun.
    rc_again, err_again, _ = ingest(corpus, data)
    assert rc_again == 0, err_again
    points = stored(data)

    # Exactly the points a clean ingest gives: the ids the pipeline assigns (with the collection's settings, as a
    # clean run records them), each once; every document's chunks 0..n-1 once.
    settings = Settings(data_dir=data, collection="test", _env_file=None)
    docs = parse_file(corpus, corpus.name, 10**9)
    with open_store(settings) as store:
        ingestor = Ingestor(settings, store, embedder)
        ingestor.run([corpus], "test")  # nothing left to do: it only adopts the collection's settings
        expected = {pid for d in docs for pid in ingestor.chunk_ids(d, chunk_text(d.text, embedder, ingestor.chunker))}
    ids = [p.id for p in points]
    by_doc: dict[str, list[int]] = {}
    for p in points:
        by_doc.setdefault(p.payload["doc_id"], []).append(p.payload["position"])
    print(
        f"\ndisk full ({SIZE_MB} MB tmpfs, {DOCS} documents, {len(expected)} chunks): guarded run stopped after "
        f"{batches} batches with exit {rc}, {guarded} points kept ({err.splitlines()[-1][:160]!r}); unguarded run "
        f"on a full disk: exit {rc_raw} after {batches_raw} batches, points then {raw}; rerun with space: exit "
        f"{rc_again}, {len(ids)} points, {len(ids) - len(set(ids))} duplicated, {len(expected - set(ids))} lost, "
        f"{len(set(ids) - expected)} foreign"
    )
    assert 0 < guarded < len(expected)
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
    assert all(sorted(pos) == list(range(len(pos))) for pos in by_doc.values()) and len(by_doc) == len(docs)
