"""BM25's avg_len and ingest order on BEIR SciFact (issue 18): the drift bound, and the order experiment.

    python benchmarks/bm25_ingest_order.py drift          # offline: sparse nDCG@10 vs relative avg_len drift
    python benchmarks/bm25_ingest_order.py order [--distractors N]   # real ingests into Qdrant Edge

`drift` chunks the whole SciFact corpus as ingest does and scores BM25 offline (qdrant-edge's Bm25 document
weights, Qdrant's IDF, as benchmarks/experiment_scifact.py does) with avg_len set to the true average times
(1 + r), r from -60% to +150%: the bound `ingest.avg_len.DRIFT_BOUND` is the largest relative drift at which
sparse nDCG@10 on the train split stays within 0.002 of its value at the true average (test is printed
beside it, not used to choose).

`order` ingests, into fresh embedded stores, a subset of the corpus (every document judged for a test query,
plus N distractors, the first N others in corpus order) three ways: the corpus alone; two short notes first
and then the corpus with the drift re-encode switched off (the old behaviour: avg_len fixed on the notes);
the same collection after one more ingest run with it on (the re-encode repairs it, embedding nothing); and
notes then corpus with it on from the start. Sparse and hybrid nDCG@10 on SciFact's test queries for each,
through the collection as the engine queries it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

from benchmarks.experiment_scifact import OfflineBm25, load, ndcg10, sparse_runs
from core.embedding import get_embedder
from core.settings import Settings
from core.store import open_store
from diagnostics.metrics import dedupe
from engine.params import retrieval_params
from engine.retrieval import stage_requests
from ingest import avg_len as avg_len_module
from ingest.chunking import ChunkerSettings, chunk_text
from ingest.parsers import parse_file
from ingest.pipeline import Ingestor
from ingest.points import embed_text

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = Path(os.environ.get("RAG_SHARED_DATA", ROOT.parent / "shared" / "data")) / "scifact"
NOTES = {
    "note_a.md": "Remember to water the plants on Monday.\n",
    "note_b.md": "Team lunch moved to Thursday at noon.\n",
}
RATIOS = (-0.6, -0.4, -0.3, -0.2, -0.15, -0.1, -0.075, -0.05, 0.0, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 1.5)


def drift(settings: Settings) -> dict:
    """Sparse nDCG@10 on SciFact (train and test) as avg_len drifts from the true average of the chunks."""
    t0 = time.perf_counter()
    embedder = get_embedder(settings)
    chunker = ChunkerSettings(settings.chunk_max_tokens, settings.chunk_overlap_tokens)
    docs = parse_file(SCIFACT / "corpus.jsonl", "corpus.jsonl", 10**10)
    texts, doc_of = [], []
    for d in docs:
        for c in chunk_text(d.text, embedder, chunker):
            texts.append(embed_text(d, c))
            doc_of.append(d.doc_id)
    off = OfflineBm25(texts)
    true = float(off.lengths.mean())
    splits = {s: load(s) for s in ("train", "test")}
    rows = []
    for r in RATIOS:
        m, vocab, idf = off.matrix(settings.bm25_k, settings.bm25_b, true * (1 + r))
        row = {"drift": r, "avg_len": round(true * (1 + r), 1)}
        for split, (queries, qrels) in splits.items():
            runs = sparse_runs(m, vocab, idf, queries, 100)
            row[split] = ndcg10({q: dedupe([doc_of[i] for i, _ in runs[q]]) for q in queries}, qrels)
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = next(r for r in rows if r["drift"] == 0.0)
    within = [abs(r["drift"]) for r in rows if abs(r["train"] - base["train"]) <= 0.002]
    outside = [abs(r["drift"]) for r in rows if abs(r["train"] - base["train"]) > 0.002]
    # The bound: the largest |drift| such that every measured drift up to it stays within 0.002 (both signs).
    bound = max((d for d in within if all(o > d for o in outside)), default=0.0)
    return {
        "chunks": len(texts),
        "true_avg_len": round(true, 2),
        "rows": rows,
        "bound_on_train": bound,
        "bound_in_use": avg_len_module.DRIFT_BOUND,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def subset(path: Path, distractors: int) -> int:
    """Write the corpus subset (every document judged for a test query, plus `distractors` others)."""
    _, qrels = load("test")
    judged = {d for rel in qrels.values() for d in rel}
    n_other, n = 0, 0
    with open(SCIFACT / "corpus.jsonl") as src, open(path, "w") as dst:
        for line in src:
            rid = json.loads(line)["_id"]
            if rid in judged or n_other < distractors:
                n_other += rid not in judged
                n += 1
                dst.write(line)
    return n


def evaluate(store, collection: str, settings: Settings, embedder, bm25, queries, qvecs, qrels) -> dict:
    p = retrieval_params(settings, mode="hybrid", candidates=100)
    runs: dict[str, dict[str, list[str]]] = {"sparse": {}, "hybrid": {}}
    for (qid, text), vec in zip(queries.items(), qvecs):
        names, reqs = stage_requests(p, vec, bm25.embed_query(text), with_payload=["doc_id"])
        by = dict(zip(names, store.query_batch(collection, reqs)))
        runs["sparse"][qid] = dedupe([h.payload["doc_id"] for h in by["sparse"]])
        runs["hybrid"][qid] = dedupe([h.payload["doc_id"] for h in by["fused"]])
    return {
        "avg_len": store.get_spec(collection).sparse["avg_len"],
        "sparse": ndcg10(runs["sparse"], qrels),
        "hybrid": ndcg10(runs["hybrid"], qrels),
    }


def order(settings: Settings, distractors: int) -> dict:
    t0 = time.perf_counter()
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "corpus").mkdir()
        corpus = tmp / "corpus" / "corpus.jsonl"
        out["docs"] = subset(corpus, distractors)
        (tmp / "notes").mkdir()
        for name, text in NOTES.items():
            (tmp / "notes" / name).write_text(text)
        s = settings.model_copy(update={"data_dir": tmp / "data"})
        embedder = get_embedder(s)
        queries, qrels = load("test")
        qvecs = embedder.encode(list(queries.values()))
        bound = avg_len_module.DRIFT_BOUND

        def ingest(store, paths, coll, reencode=True) -> dict:
            avg_len_module.DRIFT_BOUND = bound if reencode else math.inf
            ing = Ingestor(s, store, embedder)
            t = time.perf_counter()
            rep = ing.run(paths, coll)
            avg_len_module.DRIFT_BOUND = bound
            return {
                "embedded": rep.chunks_embedded,
                "reencoded": rep.chunks_reencoded,
                "points": rep.points,
                "s": round(time.perf_counter() - t, 1),
            }

        with open_store(s) as store:
            bm25 = Ingestor(s, store, embedder).bm25  # queries do not depend on avg_len

            def ev(coll):
                return evaluate(store, coll, s, embedder, bm25, queries, qvecs, qrels)

            out["corpus only"] = {"ingest": ingest(store, [corpus], "a"), **ev("a")}
            print(json.dumps({"corpus only": out["corpus only"]}), flush=True)
            notes = ingest(store, [tmp / "notes"], "b", reencode=False)
            out["notes first, avg_len fixed (before)"] = {
                "ingest": [notes, ingest(store, [corpus], "b", reencode=False)],
                **ev("b"),
            }
            print(json.dumps({"before": out["notes first, avg_len fixed (before)"]}), flush=True)
            out["same collection, one more ingest run (repair)"] = {"ingest": ingest(store, [corpus], "b"), **ev("b")}
            print(json.dumps({"repair": out["same collection, one more ingest run (repair)"]}), flush=True)
            notes = ingest(store, [tmp / "notes"], "c")
            out["notes first, avg_len kept true (after)"] = {"ingest": [notes, ingest(store, [corpus], "c")], **ev("c")}
            print(json.dumps({"after": out["notes first, avg_len kept true (after)"]}), flush=True)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("drift", "order", "both"), nargs="?", default="both")
    ap.add_argument("--distractors", type=int, default=400)
    args = ap.parse_args()
    settings = Settings(_env_file=None)
    result: dict = {"machine": f"{os.uname().machine}, {os.cpu_count()} cores"}
    if args.what in ("drift", "both"):
        result["drift"] = drift(settings)
    if args.what in ("order", "both"):
        result["order"] = order(settings, args.distractors)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
