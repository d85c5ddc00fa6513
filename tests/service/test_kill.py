"""SIGKILL the service in the middle of an ingest job and of queries, start it again: the store opens, the
job is reported interrupted, re-submitting it ends with exactly the chunks a clean run gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx

from core.settings import Settings
from ingest.chunking import chunk_text
from ingest.parsers import parse_file
from ingest.pipeline import Ingestor
from tests.conftest import scifact_docs, write_corpus
from tests.helpers.serving import free_port, wait_until_up


def _serve(data_dir, port):
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "RAG_PORT": str(port), "RAG_INGEST_BATCH_CHUNKS": "16"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_until_up(f"http://127.0.0.1:{port}/readyz", proc, "rag serve")
    return proc


def test_kill_during_ingest_job_and_queries(tmp_path, embedder):
    corpus = write_corpus(tmp_path / "corpus.jsonl", scifact_docs(150))
    data, port = tmp_path / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(data, port)
    stop = threading.Event()
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            job = http.post(
                "/v1/collections/sci/documents", files=[("files", ("corpus.jsonl", corpus.read_bytes()))]
            ).json()

            def query_loop():  # queries in flight when the kill lands
                while not stop.is_set():
                    try:
                        httpx.post(
                            f"{url}/v1/query",
                            json={"question": "cancer", "collection": "sci", "generate": False},
                            timeout=5,
                        )
                    except httpx.HTTPError:
                        pass

            threading.Thread(target=query_loop, daemon=True).start()
            deadline = time.monotonic() + 240
            while http.get(f"/v1/jobs/{job['id']}").json()["progress"]["chunks"] < 48:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()

    proc = _serve(data, port)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            assert http.get(f"/v1/jobs/{job['id']}").json()["status"] == "interrupted"
            before = sum(d["chunks"] for d in http.get("/v1/collections/sci/documents").json())
            again = http.post(
                "/v1/collections/sci/documents", files=[("files", ("corpus.jsonl", corpus.read_bytes()))]
            ).json()
            deadline = time.monotonic() + 300
            while (state := http.get(f"/v1/jobs/{again['id']}").json())["status"] in ("queued", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert state["status"] == "succeeded", state
            assert 0 < before < state["report"]["points"]
            assert state["report"]["chunks_embedded"] == state["report"]["points"] - before  # nothing redone
            listed = http.get("/v1/collections/sci/documents").json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    # Exactly the chunks a clean run gives: the ids the pipeline would assign, no more, no fewer.
    settings = Settings(data_dir=tmp_path / "unused", _env_file=None)
    ingestor = Ingestor(settings, None, embedder)  # type: ignore[arg-type]  # ids only, no store
    docs = parse_file(corpus, "corpus.jsonl", 10**9)
    expected = sum(len(chunk_text(d.text, embedder, ingestor.chunker)) for d in docs)
    assert sum(d["chunks"] for d in listed) == expected and len(listed) == len(docs)
