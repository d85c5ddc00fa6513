"""Two service replicas (two `rag serve` processes, each with its own Edge data dir) sharing one PostgreSQL job
database and one uploads folder: a replica starting while the other runs a job leaves that job running, each
job runs exactly once, and a SIGKILLed replica's job becomes `interrupted` on the replica that is left."""

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


class Replica:
    def __init__(self, data_dir, database_url: str, uploads):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "RAG_DATA_DIR": str(data_dir),
            "RAG_PORT": str(self.port),
            "RAG_DATABASE_URL": database_url,
            "RAG_UPLOADS_DIR": str(uploads),
            "RAG_JOB_POLL_S": "0.2",
            "RAG_INGEST_BATCH_CHUNKS": "16",
        }
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
            time.sleep(0.2)
        return job

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


def test_two_replicas_share_one_postgres_job_database(tmp_path, pg_url):  # noqa: F811
    uploads = tmp_path / "uploads"  # the shared volume
    docs = scifact_docs(150)
    parts = [
        ("files", (f"part{i:02}.jsonl", write_corpus(tmp_path / f"p{i}.jsonl", docs[i * 5 : i * 5 + 5]).read_bytes()))
        for i in range(30)
    ]
    a = Replica(tmp_path / "a", pg_url, uploads)
    b = None
    try:
        long = a.http.post("/v1/collections/sci/documents", files=parts).json()
        a.wait(long["id"], lambda j: j["status"] == "running" and j["progress"].get("files", 0) >= 1)

        b = Replica(tmp_path / "b", pg_url, uploads)  # starts while a's job runs
        assert b.job(long["id"])["status"] == "running"
        small = []
        for i in range(6):
            to = (a, b)[i % 2]
            files = [("files", (f"j{i}.md", f"# Job {i}\n\nJob number {i} planted {i} trees.".encode()))]
            small.append(to.http.post(f"/v1/collections/c{i}/documents", files=files).json()["id"])
        done = [b.wait(j, lambda j: j["status"] not in ("queued", "running")) for j in small]
        assert [d["status"] for d in done] == ["succeeded"] * 6
        assert [d["report"]["summary"]["added"] for d in done] == [1] * 6
        assert a.job(long["id"])["status"] == "running"  # still a's, still running, after all that

        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=30)
        job = b.wait(long["id"], lambda j: j["status"] != "running", timeout=30)  # b notices: a's lock is gone
        assert job["status"] == "interrupted" and job["reason"] == "replica_gone", job
        assert "submit the files again" in job["error"]
    finally:
        a.stop()
        if b is not None:
            b.stop()

    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, replica, started_at FROM jobs")).all()
    engine.dispose()
    runs = {r.id: r for r in rows}
    assert all(runs[j].started_at is not None for j in small)
    replicas = {runs[j].replica for j in small} | {runs[long["id"]].replica}
    assert len(replicas) == 2 and runs[long["id"]].replica not in {runs[j].replica for j in small}
    # Exactly once: each small job's document is in one store only. a was busy with the long job the whole time,
    # so b ran them all; a restarted a's store has none of them.
    again = Replica(tmp_path / "a", pg_url, uploads)
    try:
        names = {c["name"] for c in again.http.get("/v1/collections").json()}
        assert not names & {f"c{i}" for i in range(6)}
        assert again.job(long["id"])["status"] == "interrupted"
    finally:
        again.stop()
    assert not [p for p in uploads.rglob("*") if p.is_file()]  # every job's uploads are gone
