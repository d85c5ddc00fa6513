"""The retrieval rung on BEIR SciFact: BM25 (k1, b, avg_len) and fusion re-checked on the train split.

    cp -a /tmp/scifact-data /tmp/exp-data          # the store has one owner: work on a copy
    RAG_DATA_DIR=/tmp/exp-data python benchmarks/experiment_scifact.py --out /tmp/sweep.json

Dense candidates come from the collection (Qdrant, top `candidates` chunks per question). BM25 is recomputed
offline for each (k1, b, avg_len) with the very encoder ingest uses (qdrant-edge's Bm25: same tokens, same
document weights) and Qdrant's IDF (ln(1 + (N - n + 0.5) / (n + 0.5))); fusion is recomputed offline too
(RRF as Qdrant scores it; DBSF as mean +- 3 standard deviations per list). The emulation is checked against
the collection's own sparse and fused runs at the collection's settings before anything is chosen, and the
choice is made on train only. Then `rag experiment` measures the chosen settings on test through the service.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
from qdrant_edge import Bm25, Bm25Config
from scipy import sparse as sp

from core.settings import Settings
from core.sparse import Bm25Encoder
from core.store import open_store
from diagnostics.metrics import dedupe, mean, ndcg_at, recall_at
from engine.engine import Engine
from engine.retrieval import PAYLOAD_FIELDS, stage_requests
from ingest.points import embed_text

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = Path(os.environ.get("RAG_SHARED_DATA", ROOT.parent / "shared" / "data")) / "scifact"


def load(split: str):
    texts = {}
    for line in open(SCIFACT / "queries.jsonl"):
        row = json.loads(line)
        texts[row["_id"]] = row["text"]
    qrels: dict[str, dict[str, int]] = {}
    for line in list(open(SCIFACT / "qrels" / f"{split}.tsv"))[1:]:
        q, d, s = line.strip().split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    return {q: texts[q] for q in qrels}, qrels


def ndcg10(runs: dict[str, list[str]], qrels) -> float:
    return round(mean([ndcg_at(runs[q], qrels[q], 10) for q in qrels]), 4)


def recall100(runs, qrels) -> float:
    return round(mean([recall_at(runs[q], qrels[q], 100) for q in qrels]), 4)


class OfflineBm25:
    """BM25 over the collection's chunks with any (k1, b, avg_len), scored as Qdrant scores its bm25 vector."""

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.lengths = np.array([sum(Bm25Encoder().term_counts(t).values()) for t in texts], dtype=float)

    def matrix(self, k: float, b: float, avg_len: float):
        enc = Bm25(Bm25Config(k=k, b=b, avg_len=avg_len, language="english"))
        rows, cols, vals = [], [], []
        for i, t in enumerate(self.texts):
            v = enc.embed_document(t)
            rows += [i] * len(v.indices)
            cols += list(v.indices)
            vals += list(v.values)
        cols_arr = np.array(cols, dtype=np.int64)
        vocab, inv = np.unique(cols_arr, return_inverse=True)
        m = sp.csc_matrix((vals, (rows, inv)), shape=(len(self.texts), len(vocab)))  # sliced by column
        df = np.bincount(inv, minlength=len(vocab))
        n = len(self.texts)
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        return m, {int(t): j for j, t in enumerate(vocab)}, idf


def sparse_runs(m, vocab, idf, queries: dict[str, str], depth: int) -> dict[str, list[tuple[int, float]]]:
    enc = Bm25Encoder()
    out = {}
    for qid, text in queries.items():
        q = enc.embed_query(text)
        cols = [vocab[i] for i in q.indices if i in vocab]
        if not cols:
            out[qid] = []
            continue
        scores = np.asarray(m[:, cols] @ (idf[cols] * np.ones(len(cols)))).ravel()
        top = np.argsort(-scores, kind="stable")[:depth]
        out[qid] = [(int(i), float(scores[i])) for i in top if scores[i] > 0]
    return out


def rrf(lists, k: int, weights=(1.0, 1.0)) -> list[int]:
    score: dict[int, float] = {}
    for hits, w in zip(lists, weights):
        for rank, (i, _) in enumerate(hits, 1):
            score[i] = score.get(i, 0.0) + 1.0 / (rank / w + k - 1)
    return sorted(score, key=lambda i: -score[i])


def dbsf(lists, weights=(1.0, 1.0)) -> list[int]:  # Qdrant's DBSF takes no weights: (1, 1) here
    score: dict[int, float] = {}
    for hits, w in zip(lists, weights):
        if not hits:
            continue
        s = np.array([x for _, x in hits])
        mu, sd = s.mean(), s.std()
        lo, hi = mu - 3 * sd, mu + 3 * sd
        for i, x in hits:
            norm = 0.5 if hi == lo else min(1.0, max(0.0, (x - lo) / (hi - lo)))
            score[i] = score.get(i, 0.0) + w * norm
    return sorted(score, key=lambda i: -score[i])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--collection", default="scifact")
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--split", default="train")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    settings = Settings().model_copy(update={"collection": args.collection})
    t0 = time.perf_counter()
    result: dict = {"split": args.split, "machine": f"{os.uname().machine}, {os.cpu_count()} cores"}
    engine = Engine.build(settings, open_store(settings))
    try:
        spec = engine.require_collection(args.collection)
        hits = engine.store.scroll(args.collection, PAYLOAD_FIELDS)
        ids = [h.id for h in hits]
        doc_of = [h.payload["doc_id"] for h in hits]
        texts = [
            embed_text(
                type("D", (), {"title": h.payload.get("title") or ""}),
                type("C", (), {"heading_path": h.payload.get("heading_path") or [], "text": h.payload["text"]}),
            )
            for h in hits
        ]
        position = {cid: i for i, cid in enumerate(ids)}
        queries, qrels = load(args.split)
        qvecs = engine.embedder.encode(list(queries.values()))
        dense, fused_store, sparse_store = {}, {}, {}
        p = engine.params(mode="hybrid", candidates=args.candidates)
        for (qid, text), vec in zip(queries.items(), qvecs):
            names, reqs = stage_requests(p, vec, engine.bm25.embed_query(text), with_payload=False)
            by_stage = dict(zip(names, engine.store.query_batch(args.collection, reqs)))
            d, s, f = by_stage["dense"], by_stage["sparse"], by_stage["fused"]
            dense[qid] = [(position[h.id], h.score) for h in d]
            sparse_store[qid] = [position[h.id] for h in s]
            fused_store[qid] = [position[h.id] for h in f]
    finally:
        engine.close()

    def docs(run: list[int]) -> list[str]:
        return dedupe([doc_of[i] for i in run])

    def score(run_of) -> dict:
        runs = {q: docs(run_of(q)) for q in queries}
        return {"ndcg@10": ndcg10(runs, qrels), "recall@100": recall100(runs, qrels)}

    off = OfflineBm25(texts)
    measured = float(off.lengths.mean())
    result["chunks"] = len(texts)
    result["avg_len_measured"] = round(measured, 2)
    result["collection_sparse"] = spec.sparse
    result["store"] = {
        "dense": score(lambda q: [i for i, _ in dense[q]]),
        "sparse": score(lambda q: sparse_store[q]),
        f"fused ({p.fusion})": score(lambda q: fused_store[q]),
    }
    # The emulation at the collection's own settings must give the store's numbers.
    sc = spec.sparse
    m, vocab, idf = off.matrix(sc["k"], sc["b"], sc["avg_len"])
    base_sparse = sparse_runs(m, vocab, idf, queries, args.candidates)
    result["emulated_at_collection_settings"] = {
        "sparse": score(lambda q: [i for i, _ in base_sparse[q]]),
        "dbsf": score(lambda q: dbsf([base_sparse[q], dense[q]])),
        "rrf k=2": score(lambda q: rrf([base_sparse[q], dense[q]], 2)),
    }
    grid = {}
    for k1 in (0.6, 0.9, 1.2, 1.5):
        for b in (0.4, 0.6, 0.75, 0.9):
            for avg in sorted({round(measured, 1), sc["avg_len"]}):
                m, vocab, idf = off.matrix(k1, b, avg)
                sr = sparse_runs(m, vocab, idf, queries, args.candidates)
                row = {"sparse": score(lambda q: [i for i, _ in sr[q]])["ndcg@10"]}
                row["dbsf"] = score(lambda q: dbsf([sr[q], dense[q]]))["ndcg@10"]
                for rk in (2, 10, 60):
                    for w in ((1.0, 1.0), (1.0, 1.5), (1.0, 2.0), (1.5, 1.0)):
                        row[f"rrf k={rk} w={w}"] = score(lambda q: rrf([sr[q], dense[q]], rk, w))["ndcg@10"]
                grid[f"k1={k1} b={b} avg_len={avg}"] = row
                print(f"k1={k1} b={b} avg_len={avg}: sparse {row['sparse']} dbsf {row['dbsf']}", flush=True)
    result["grid"] = grid
    best = max(((cfg, f, v) for cfg, row in grid.items() for f, v in row.items() if f != "sparse"), key=lambda x: x[2])
    best_sparse = max(grid.items(), key=lambda x: x[1]["sparse"])
    result["best_fused_on_train"] = {"bm25": best[0], "fusion": best[1], "ndcg@10": best[2]}
    result["best_sparse_on_train"] = {"bm25": best_sparse[0], "ndcg@10": best_sparse[1]["sparse"]}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(json.dumps({k: v for k, v in result.items() if k != "grid"}, indent=2))
    assert math.isfinite(best[2])


if __name__ == "__main__":
    main()
