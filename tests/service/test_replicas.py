"""Replicas against one PostgreSQL job database, as real `rag serve` processes (issue 20).

Replicas need a Qdrant server they all share (guides/scaling.md); none installs here, so what runs here is the
single-replica promise with the embedded store: a second replica with its own embedded store is refused at
start-up naming the fix (RAG_QDRANT_URL), and so is RAG_REPLICAS=2; a replica SIGKILLed mid-job is replaced by
a new process on its data dir, which takes the job over after the dead one's lock (its lease) is gone and runs
it to the end exactly once: every document's chunks stored once, none lost. Live replicas claiming from one
database (exactly once, fairness, a live replica's job left alone, takeover by a live replica) are tested
with two job managers on PostgreSQL in test_jobs.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from sqlalchemy import create_engine, text

from tests.conftest import scifact_docs, write_corpus
from tests.helpers.serving import free_port, wait_until_up


def replica_env(data_dir, database_url: str, uploads, **extra) -> dict:
    return {
        **os.environ,
        "RAG_DATA_DIR": str(data_dir),
        "RAG_DATABASE_URL": database_url,
        "RAG_UPLOADS_DIR": str(uploads),
        "RAG_JOB_POLL_S": "0.2",
        "RAG_INGEST_BATCH_CHUNKS": "16",
        **extra,
    }


class Replica:
    def __init__(self, data_dir, database_url: str, uploads):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = replica_env(data_dir, database_url, uploads, RAG_PORT=str(self.port))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until_up(f"{self.url}/readyz", self.proc, "rag serve")
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def job(self, job_id: str) -> dict:
        return self.http.get(f"/v1/jobs/{job_id}").json()

    def wait(self, job_id: str, until, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while not until(job := self.job(job_id)):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        return job

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


def refused(env: dict) -> str:
    """`rag serve` that must refuse to start: its exit status 2 and the error it printed."""
    env = {**env, "RAG_PORT": str(free_port())}
    done = subprocess.run([sys.executable, "-m", "cli", "serve"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    return " ".join(done.stderr.split())


def test_one_embedded_replica_per_database_and_a_killed_ones_job_taken_over(tmp_path, pg_url):
    uploads = tmp_path / "uploads"  # the shared volume
    docs = scifact_docs(150)
    parts = [
        ("files", (f"part{i:02}.jsonl", write_corpus(tmp_path / f"p{i}.jsonl", docs[i * 5 : i * 5 + 5]).read_bytes()))
        for i in range(30)
    ]
    # RAG_REPLICAS=2 with the embedded store: refused before anything loads, naming the fix.
    message = refused(replica_env(tmp_path / "x", pg_url, uploads, RAG_REPLICAS="2"))
    assert "RAG_REPLICAS=2" in message and "RAG_QDRANT_URL" in message

    a = Replica(tmp_path / "a", pg_url, uploads)
    again = None
    try:
        long = a.http.post("/v1/collections/sci/documents", files=parts).json()
        a.wait(long["id"], lambda j: j["status"] == "running" and j["progress"].get("files", 0) >= 3)

        # A second replica with its own embedded store, on the same database, while a runs: refused.
        message = refused(replica_env(tmp_path / "b", pg_url, uploads))
        assert "another replica with an embedded Qdrant store" in message and "RAG_QDRANT_URL" in message
        assert a.job(long["id"])["status"] == "running"  # a and its job untouched

        a.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        a.proc.wait(timeout=30)
        again = Replica(tmp_path / "a", pg_url, uploads)  # the replacement: a new process on a's data dir
        up = time.monotonic() - killed
        job = again.wait(long["id"], lambda j: j["status"] not in ("queued", "running"), timeout=600)
        done = time.monotonic() - killed
        assert job["status"] == "succeeded", job
        assert job["progress"]["attempts"] == 1  # one run cut short by the kill, then this one
        summary = job["report"]["summary"]
        documents = again.http.get("/v1/collections/sci/documents").json()
        points = {c["name"]: c["points"] for c in again.http.get("/v1/collections").json()}["sci"]
        assert len(documents) == 150  # none lost
        assert sum(d["chunks"] for d in documents) == points  # none stored twice
        print(
            f"\ntakeover: replacement up {up:.1f} s after the SIGKILL, job done {done:.1f} s after it; "
            f"{points} chunks, {summary}"
        )
    finally:
        a.stop()
        if again is not None:
            again.stop()

    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, replica FROM jobs")).all()
    engine.dispose()
    assert [r.status for r in rows] == ["succeeded"]  # one job row, run to its end once
    assert not [p for p in uploads.rglob("*") if p.is_file()]  # its uploads are gone
