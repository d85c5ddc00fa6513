"""Ingest throughput on BEIR SciFact, against bare `model.encode` on the same chunk texts.

    python benchmarks/ingest_throughput.py [--docs N] [--corpus ../shared/data/scifact/corpus.jsonl]

Runs, in one process: (1) the full ingest pipeline into a fresh embedded store (parse, chunk, embed,
BM25, upsert); (2) `model.encode` alone on exactly the chunk texts the pipeline embedded; (3) a second
ingest of the same corpus, which must embed nothing. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from core.embedding import get_embedder
from core.settings import Settings
from core.store import open_store
from ingest.chunking import chunk_text
from ingest.parsers import parse_file
from ingest.pipeline import Ingestor
from ingest.points import embed_text

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared/data/scifact/corpus.jsonl")
    ap.add_argument("--docs", type=int, default=0, help="first N documents only (0 = all)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if args.docs:
            corpus = Path(tmp) / "corpus.jsonl"
            with open(args.corpus) as src, open(corpus, "w") as dst:
                for i, line in enumerate(src):
                    if i >= args.docs:
                        break
                    dst.write(line)
        settings = Settings(data_dir=Path(tmp) / "store", collection="bench")
        embedder = get_embedder(settings)
        embedder.encode(["warm up"] * 8)

        with open_store(settings) as store:
            t0 = time.perf_counter()
            first = Ingestor(settings, store, embedder).run([corpus], "bench")
            pipeline_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            second = Ingestor(settings, store, embedder).run([corpus], "bench")
            rerun_s = time.perf_counter() - t0

        ingestor = Ingestor(settings, None, embedder)  # type: ignore[arg-type]  # only its chunker is used
        docs = parse_file(corpus, corpus.name, 10**10)
        texts = [embed_text(d, c) for d in docs for c in chunk_text(d.text, embedder, ingestor.chunker)]
        assert len(texts) == first.chunks_embedded, (len(texts), first.chunks_embedded)
        t0 = time.perf_counter()
        embedder.encode(texts)
        encode_s = time.perf_counter() - t0

    n_docs = first.documents_added
    result = {
        "corpus": str(args.corpus),
        "documents": n_docs,
        "chunks": first.chunks_embedded,
        "pipeline_s": round(pipeline_s, 2),
        "pipeline_docs_per_s": round(n_docs / pipeline_s, 2),
        "pipeline_chunks_per_s": round(first.chunks_embedded / pipeline_s, 2),
        "bare_encode_s": round(encode_s, 2),
        "bare_encode_chunks_per_s": round(len(texts) / encode_s, 2),
        "ratio_pipeline_to_bare": round(encode_s / pipeline_s, 3),
        "rerun_s": round(rerun_s, 2),
        "rerun_chunks_embedded": second.chunks_embedded,
        "points_after_first": first.points,
        "points_after_rerun": second.points,
        "settings": {
            "chunk_max_tokens": settings.chunk_max_tokens,
            "overlap": settings.chunk_overlap_tokens,
            "batch": settings.embedding_batch_size,
            "ingest_batch_chunks": settings.ingest_batch_chunks,
        },
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
