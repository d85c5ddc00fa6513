"""Retrieval quality and latency of the live API on BEIR SciFact.

    RAG_DATA_DIR=benchmarks/.data rag ingest ../shared/data/scifact/corpus.jsonl --collection scifact
    python benchmarks/retrieval_api.py [--split test] [--tune] [--latency-requests 300]

Starts `rag serve` on the ingested store, sends every query of the split over HTTP (generate=false), and
reports nDCG@10, recall@10 and recall@100 for sparse, dense, hybrid RRF and hybrid DBSF, next to rank-bm25
(BM25Okapi over whole documents, same tokens) and the published references. Chunks are mapped to
documents by their best rank (first occurrence), as BEIR ranks documents, over the top 100 chunks (so
"recall@100" counts the documents found within 100 chunks: a slight undercount against a 100-document list).
`--tune` sweeps RRF k and weights on the train split (the split to tune on). Then retrieval-only latency
at concurrency 1 and 8.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from diagnostics.metrics import dedupe, mean, ndcg_at, recall_at

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
PUBLISHED = {"BM25 (Lucene, flat)": 0.679, "all-MiniLM-L6-v2": 0.645, "hybrid RRF BM25 + bge-base": 0.744}


def load(split: str):
    queries = {}
    for line in open(SCIFACT / "queries.jsonl"):
        row = json.loads(line)
        queries[row["_id"]] = row["text"]
    qrels: dict[str, dict[str, int]] = {}
    for line in list(open(SCIFACT / "qrels" / f"{split}.tsv"))[1:]:
        q, d, s = line.strip().split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    return {q: queries[q] for q in qrels}, qrels


def evaluate(runs: dict[str, list[str]], qrels) -> dict[str, float]:
    return {
        "ndcg@10": round(mean([ndcg_at(runs[q], qrels[q], 10) for q in qrels]), 4),
        "recall@10": round(mean([recall_at(runs[q], qrels[q], 10) for q in qrels]), 4),
        "recall@100": round(mean([recall_at(runs[q], qrels[q], 100) for q in qrels]), 4),
    }


def run_config(http: httpx.Client, queries: dict[str, str], body: dict) -> dict[str, list[str]]:
    out = {}
    for qid, text in queries.items():
        # The audit's definition: documents in the order of their best chunk among the top `candidates`
        # (100) fused chunks.
        r = http.post(
            "/v1/query",
            json={
                "question": text,
                "collection": "scifact",
                "generate": False,
                "top_k": 100,
                "candidates": 100,
                **body,
            },
        )
        r.raise_for_status()
        out[qid] = dedupe([c["doc_id"] for c in r.json()["contexts"]])
    return out


def rank_bm25_baseline(queries, qrels) -> dict[str, float]:
    from rank_bm25 import BM25Okapi

    from core.sparse import Bm25Encoder

    enc = Bm25Encoder()
    docs = [json.loads(line) for line in open(SCIFACT / "corpus.jsonl")]
    okapi = BM25Okapi([enc.tokens(d["title"] + "\n\n" + d["text"]) for d in docs], k1=1.2, b=0.75)
    ids = [d["_id"] for d in docs]
    runs = {
        q: [ids[i] for i in np.argsort(-okapi.get_scores(list(set(enc.tokens(t)))), kind="stable")[:100]]
        for q, t in queries.items()
    }
    return evaluate(runs, qrels)


def latency(url: str, queries: list[str], concurrency: int, n: int) -> dict:
    def one(i: int) -> float:
        t0 = time.perf_counter()
        r = client.post(
            "/v1/query",
            json={"question": queries[i % len(queries)], "collection": "scifact", "generate": False, "top_k": 10},
        )
        r.raise_for_status()
        return (time.perf_counter() - t0) * 1000

    with httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        for i in range(10):
            one(i)  # warm-up
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            ms = list(pool.map(one, range(n)))
        wall = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "requests": n,
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "requests_per_s": round(n / wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(ROOT / "benchmarks" / ".data"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--tune", action="store_true", help="sweep RRF k and weights on the train split")
    ap.add_argument("--latency-requests", type=int, default=300)
    args = ap.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RAG_DATA_DIR": args.data_dir, "RAG_PORT": str(port), "RAG_API_KEYS": ""}
    env.pop("RAG_API_KEYS")
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve"], env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    result: dict = {"machine": f"{os.uname().machine}, {os.cpu_count()} cores"}
    try:
        with httpx.Client(base_url=url, timeout=120) as http:
            for _ in range(600):
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            if args.tune:
                queries, qrels = load("train")
                sweep = {}
                for k in (2, 10, 30, 60, 100):
                    for w in ((1.0, 1.0), (1.0, 1.5), (1.5, 1.0)):
                        body = {"mode": "hybrid", "fusion": {"method": "rrf", "rrf_k": k, "weights": list(w)}}
                        sweep[f"rrf k={k} w={w}"] = evaluate(run_config(http, queries, body), qrels)
                sweep["dbsf"] = evaluate(
                    run_config(http, queries, {"mode": "hybrid", "fusion": {"method": "dbsf"}}), qrels
                )
                result["train_sweep"] = sweep
            queries, qrels = load(args.split)
            configs = {
                "sparse (Qdrant BM25)": {"mode": "sparse"},
                "dense (all-MiniLM-L6-v2)": {"mode": "dense"},
                "hybrid RRF (k=2, equal weights)": {"mode": "hybrid", "fusion": {"method": "rrf", "rrf_k": 2}},
                "hybrid RRF (k=60)": {"mode": "hybrid", "fusion": {"method": "rrf", "rrf_k": 60}},
                "hybrid DBSF (the default)": {"mode": "hybrid", "fusion": {"method": "dbsf"}},
            }
            result[args.split] = {
                name: evaluate(run_config(http, queries, body), qrels) for name, body in configs.items()
            }
            result[args.split]["rank-bm25 BM25Okapi (whole documents)"] = rank_bm25_baseline(queries, qrels)
            result["published_ndcg@10"] = PUBLISHED
            texts = list(queries.values())
            result["latency_retrieval_only"] = [latency(url, texts, c, args.latency_requests) for c in (1, 8)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
