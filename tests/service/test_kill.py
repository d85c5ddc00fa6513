"""SIGKILL the service in the middle of an ingest job and of queries, start it again: the store opens, the
job is queued again and resumed (job_max_attempts), ending with exactly the chunks a clean run gives, nothing
written before the kill embedded twice. Part of issue 20's fault suite (marker `fault`); `-s` prints the figures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from core.settings import Settings
from ingest.chunking import chunk_text
from ingest.parsers import parse_file
from ingest.pipeline import Ingestor
from tests.conftest import scifact_docs, write_corpus
from tests.helpers.serving import free_port, wait_until_up

pytestmark = pytest.mark.fault


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
    sent: list[int | str] = []  # each query's status code, or its transport error's name
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            job = http.post(
                "/v1/collections/sci/documents", files=[("files", ("corpus.jsonl", corpus.read_bytes()))]
            ).json()

            def query_loop():  # queries in flight when the kill lands
                while not stop.is_set():
                    try:
                        r = httpx.post(
                            f"{url}/v1/query",
                            json={"question": "cancer", "collection": "sci", "generate": False},
                            timeout=5,
                        )
                        sent.append(r.status_code)
                    except httpx.HTTPError as exc:
                        sent.append(type(exc).__name__)

            threading.Thread(target=query_loop, daemon=True).start()
            deadline = time.monotonic() + 240
            while http.get(f"/v1/jobs/{job['id']}").json()["progress"]["chunks"] < 48:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            killed_at = http.get(f"/v1/jobs/{job['id']}").json()["progress"]["chunks"]
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            time.sleep(1)  # the queries in flight meet the dead server
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()

    proc = _serve(data, port)
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            # The restarted service finds its dead predecessor's job and runs it again (job_max_attempts 2).
            deadline = time.monotonic() + 300
            while (state := http.get(f"/v1/jobs/{job['id']}").json())["status"] in ("queued", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert state["status"] == "succeeded" and state["progress"]["attempts"] == 1, state
            before = state["report"]["points"] - state["report"]["chunks_embedded"]  # kept from the killed run
            assert before >= killed_at  # nothing written before the kill was redone
            listed = http.get("/v1/collections/sci/documents").json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    # Exactly the chunks a clean run gives: the ids the pipeline would assign, no more, no fewer.
    settings = Settings(data_dir=tmp_path / "unused", _env_file=None)
    ingestor = Ingestor(settings, None, embedder)  # type: ignore[arg-type]  # ids only, no store
    docs = parse_file(corpus, "corpus.jsonl", 10**9)
    expected = sum(len(chunk_text(d.text, embedder, ingestor.chunker)) for d in docs)
    stored = sum(d["chunks"] for d in listed)
    errors = [s for s in sent if s != 200]
    print(
        f"\nSIGKILL mid-job: {len(sent)} queries sent, {len(errors)} not answered 200 "
        f"({sorted(set(map(str, errors)))}: 404 before the collection's first batch, transport errors after the kill); "
        f"{before} chunks kept (>= {killed_at} reported before the kill); the job resumed by the restarted "
        f"service embedded {state['report']['chunks_embedded']}; "
        f"{stored} chunks stored vs {expected} of a clean ingest, "
        f"{len(listed)} of {len(docs)} documents"
    )
    assert stored == expected and len(listed) == len(docs)
    assert not [s for s in sent if isinstance(s, int) and s >= 500]  # the kill gives transport errors, never a 5xx
