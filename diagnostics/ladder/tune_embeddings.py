"""A retriever tuned on your own questions: fine-tune the sentence-transformers model on (question, positive,
hard negatives) pairs with MultipleNegativesRankingLoss, build a new collection with it (the old one is not
touched), and audit both on questions held out from training.

Training is a plain PyTorch loop around sentence-transformers' own loss (no `accelerate` needed): batches
never hold the same question or the same positive twice (in-batch negatives would otherwise include false
ones), AdamW with linear warm-up and decay. On a CPU, one epoch over a few hundred questions takes minutes.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from pathlib import Path
from typing import Callable, Sequence

from core.embedding import get_embedder, resolve_model_path
from core.errors import ConfigError
from core.settings import Settings
from core.sparse import Bm25Encoder
from core.store import Store
from diagnostics.audit.golden import GoldenSet


def split_golden(golden: GoldenSet, holdout: float = 0.2, salt: str = "") -> tuple[GoldenSet, GoldenSet]:
    """(train, held-out): each case goes by a hash of its id, so the split is stable as the set grows."""
    if not 0 < holdout < 1:
        raise ConfigError("holdout must be between 0 and 1")
    train, held = [], []
    for c in golden.cases:
        h = int(hashlib.sha1(f"{salt}{c.id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held if h < holdout else train).append(c)
    if not train or not held:
        raise ConfigError(f"a {holdout:.0%} hold-out of {len(golden.cases)} cases leaves one side empty")
    return GoldenSet(train), GoldenSet(held)


def batches(rows: Sequence[dict], batch_size: int, seed: int = 0) -> list[list[dict]]:
    """Shuffled batches with no question and no positive passage twice in one batch."""
    order = list(rows)
    random.Random(seed).shuffle(order)
    out: list[list[dict]] = []
    pending = order
    while pending:
        batch, keys, rest = [], set(), []
        for row in pending:
            k = {("q", row["question"]), ("p", row["positive"])}
            if len(batch) < batch_size and not (k & keys):
                batch.append(row)
                keys |= k
            else:
                rest.append(row)
        out.append(batch)
        pending = rest
    return out


def train(
    base_model: str,
    pairs: Sequence[dict],
    out_dir: Path,
    epochs: int = 1,
    batch_size: int = 32,
    lr: float = 2e-5,
    negatives: int = 1,
    warmup: float = 0.1,
    device: str = "cpu",
    seed: int = 0,
    max_seq_length: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict:
    """Fine-tune `base_model` with MultipleNegativesRankingLoss on (question, positive, hard negatives...)
    and save it to `out_dir`. Rows with fewer than `negatives` hard negatives are dropped. `max_seq_length`
    truncates passages during training only (cheaper on a CPU); the saved model keeps the base's. Returns stats."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    rows = [r for r in pairs if len(r.get("negatives", [])) >= negatives]
    if not rows:
        raise ConfigError(f"no training pairs with {negatives} hard negative(s)")
    torch.manual_seed(seed)
    model = SentenceTransformer(resolve_model_path(base_model), device=device)
    saved_length = model.max_seq_length
    if max_seq_length:
        model.max_seq_length = min(max_seq_length, saved_length)
    loss_fn = MultipleNegativesRankingLoss(model)
    plan = [batches(rows, batch_size, seed + e) for e in range(epochs)]
    steps = sum(len(p) for p in plan)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    warm = max(1, int(warmup * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    model.train()
    t0, step, losses = time.perf_counter(), 0, []
    for epoch in plan:
        for batch in epoch:
            columns = [[r["question"] for r in batch], [r["positive"] for r in batch]]
            columns += [[r["negatives"][i] for r in batch] for i in range(negatives)]
            features = []
            for texts in columns:
                f = (getattr(model, "preprocess", None) or model.tokenize)(texts)
                features.append({k: v.to(model.device) if hasattr(v, "to") else v for k, v in f.items()})
            loss = loss_fn(features, None)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            losses.append(float(loss.detach()))
            if progress:
                progress(step, steps, losses[-1])
    model.eval()
    model.max_seq_length = saved_length
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir))
    first, last = losses[: max(1, len(losses) // 5)], losses[-max(1, len(losses) // 5) :]
    return {
        "base_model": base_model,
        "out": str(out_dir),
        "pairs": len(rows),
        "epochs": epochs,
        "batch_size": batch_size,
        "hard_negatives": negatives,
        "train_max_seq_length": max_seq_length or saved_length,
        "steps": steps,
        "lr": lr,
        "loss_first_fifth": round(sum(first) / len(first), 4),
        "loss_last_fifth": round(sum(last) / len(last), 4),
        "seconds": round(time.perf_counter() - t0, 1),
        "device": device,
        "loss": "MultipleNegativesRankingLoss (in-batch + hard negatives)",
        "finite": all(math.isfinite(x) for x in losses),
    }


def build_collection(
    settings: Settings,
    store: Store,
    model_dir: Path,
    corpus: Sequence[Path],
    source: str,
    target: str,
    progress=None,
) -> dict:
    """Ingest `corpus` into a new collection `target` embedded with the tuned model, with the BM25 settings of
    `source` (so hybrid differs by the dense side alone). `source` is never written to."""
    from ingest.pipeline import Ingestor

    if target == source:
        raise ConfigError("the tuned collection must be a new one: give another name than the source's")
    src = store.get_spec(source)
    if src is None:
        raise ConfigError(f"no source collection {source!r}")
    tuned = settings.model_copy(update={"embedding_model": str(Path(model_dir).resolve())})
    sp = src.sparse
    bm25 = Bm25Encoder(sp["k"], sp["b"], sp["avg_len"], sp["language"])
    embedder = get_embedder(tuned, role="ingest")
    t0 = time.perf_counter()
    report = Ingestor(tuned, store, embedder, bm25).run(list(corpus), target, progress=progress)
    return {
        "collection": target,
        "model": tuned.embedding_model,
        "status": report.status,
        "chunks_embedded": report.chunks_embedded,
        "points": report.points,
        "failed": [f.path for f in report.failed],
        "seconds": round(time.perf_counter() - t0, 1),
    }
