"""Embedding throughput for bulk ingest: a synthetic corpus of N chunks through the shipped MiniLM on one
device, with tokenization overlapped with the GPU (a thread tokenizes batch i+1 while batch i runs), fp16 on
CUDA, large batches. Reports chunks/s and the projected time for 1M chunks.

    python benchmarks/gpu_embed_throughput.py --n 1000000 --batch 1024            # on a CUDA machine
    python benchmarks/gpu_embed_throughput.py --n 2000 --batch 64 --device cpu    # a smoke run anywhere

The corpus is made here (no download): chunk-like texts of ~60-200 tokens drawn from a fixed vocabulary with
a seed, so runs compare. Vectors are checked against sentence-transformers' own encode on a sample (cosine),
so a fast path that computes the wrong thing cannot pass as a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = (
    "protein cell gene expression tumour patient study trial dose risk increase decrease mortality therapy "
    "receptor signal pathway model data sample analysis effect response level control group result method "
    "index query vector search document chunk answer source retrieval fusion rerank embedding token cluster "
    "server replica shard latency throughput memory disk network request error job queue store collection"
).split()


def corpus(n: int, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(n):
        k = rng.randint(45, 150)
        yield " ".join(rng.choice(WORDS) for _ in range(k)) + "."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from core.embedding import resolve_model_path
    from core.settings import DEFAULT_EMBEDDING_MODEL

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = SentenceTransformer(str(resolve_model_path(DEFAULT_EMBEDDING_MODEL)), device=device)
    model.max_seq_length = args.max_length
    transformer = model[0].auto_model
    if device == "cuda":
        transformer.half()
    tok = model.tokenizer
    transformer.eval()

    batches: queue.Queue = queue.Queue(maxsize=4)

    def producer() -> None:  # tokenization on the CPU, overlapped with the device's work
        buf = []
        for text in corpus(args.n):
            buf.append(text)
            if len(buf) == args.batch:
                batches.put(tok(buf, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt"))
                buf = []
        if buf:
            batches.put(tok(buf, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt"))
        batches.put(None)

    threading.Thread(target=producer, daemon=True).start()
    done, first = 0, None
    t0 = time.perf_counter()
    with torch.inference_mode():
        while (enc := batches.get()) is not None:
            enc = {k: v.to(device, non_blocking=True) for k, v in enc.items()}
            out = transformer(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
            vecs = torch.nn.functional.normalize((out * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)
            if first is None:
                first = vecs[:32].float().cpu().numpy()
            done += vecs.shape[0]
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    # The fast path must compute what the library computes (fp16 on CUDA: cosine >= 0.999).
    sample = list(corpus(32))
    ref = model.encode(sample, normalize_embeddings=True, convert_to_numpy=True)
    cos = float(np.min(np.sum(ref.astype(np.float32) * first, axis=1)))
    figures = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "chunks": done,
        "batch": args.batch,
        "seconds": round(seconds, 2),
        "chunks_per_s": round(done / seconds, 1),
        "projected_1m_s": round(1_000_000 / (done / seconds), 1),
        "min_cosine_vs_library": round(cos, 5),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
