"""Queries at a steady rate before and during an ingest job on the same service.

    python benchmarks/load_during_ingest.py [--rate 10] [--seconds 30] [--docs 400]

Starts `rag serve` on a fresh data dir with the project's docs/ ingested, sends retrieval-only queries at
a fixed rate for --seconds (before), then uploads the first --docs SciFact abstracts as an ingest job and
keeps the same rate until the job ends (during). Reports, for each phase, requests, errors (non-2xx or
transport failures; target 0) and latency percentiles. Loopback only; bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
QUESTIONS = [
    "How are documents chunked?",
    "What happens to a corrupt PDF?",
    "What is a golden set?",
    "How do I point the service at a Qdrant cluster?",
    "Which embedding model is used by default?",
]


def phase(url: str, rate: float, until, limit_s: float) -> dict:
    lat, errors, sent = [], 0, 0
    lock = threading.Lock()
    t0 = time.monotonic()

    def one(i: int) -> None:
        nonlocal errors
        t = time.perf_counter()
        try:
            r = httpx.post(
                f"{url}/v1/query",
                json={"question": QUESTIONS[i % len(QUESTIONS)], "generate": False, "top_k": 5},
                timeout=30,
            )
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        with lock:
            lat.append((time.perf_counter() - t) * 1000)
            errors += not ok

    threads, finished, checked = [], False, 0.0
    while not finished and time.monotonic() - t0 < limit_s:
        if time.monotonic() - checked >= 1.0:  # ask about the job once a second, not per query
            finished, checked = until(), time.monotonic()
            if finished:
                break
        th = threading.Thread(target=one, args=(sent,))
        th.start()
        threads.append(th)
        sent += 1
        time.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
    for th in threads:
        th.join(timeout=60)
    p = lambda q: round(float(np.percentile(lat, q)), 1)  # noqa: E731
    return {
        "requests": sent,
        "errors": errors,
        "seconds": round(time.monotonic() - t0, 1),
        "p50_ms": p(50),
        "p95_ms": p(95),
        "p99_ms": p(99),
        "max_ms": round(max(lat), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=10.0, help="queries per second")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--docs", type=int, default=400)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        env = {**os.environ, "RAG_DATA_DIR": f"{tmp}/data", "RAG_PORT": str(port)}
        subprocess.run(
            [sys.executable, "-m", "cli", "ingest", str(ROOT / "docs")], env=env, check=True, capture_output=True
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            before = phase(url, args.rate, lambda: False, args.seconds)
            corpus = Path(tmp) / "corpus.jsonl"
            with open(SCIFACT) as src:
                corpus.write_text("".join(line for _, line in zip(range(args.docs), src)))
            job = httpx.post(
                f"{url}/v1/collections/scifact/documents",
                files=[("files", ("corpus.jsonl", corpus.read_bytes()))],
                timeout=60,
            ).json()
            state = {}

            def done() -> bool:
                state.update(httpx.get(f"{url}/v1/jobs/{job['id']}", timeout=30).json())
                return state["status"] not in ("queued", "running")

            during = phase(url, args.rate, done, 900)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(
        json.dumps(
            {
                "rate_per_s": args.rate,
                "before_ingest": before,
                "during_ingest": during,
                "job": {"status": state.get("status"), "chunks": (state.get("report") or {}).get("chunks_embedded")},
                "machine": f"{os.uname().machine}, {os.cpu_count()} cores",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
