"""Retrain the offline faithfulness judge (diagnostics/judges/models/faithfulness_lr.json).

    python -m diagnostics.judges.logistic_train [--data ../shared/data] [--synthetic 2400] [--out PATH]

Training data, never QAGS (held out for agreement reporting):
- SciFact claims train: a claim against the abstract it cites; supported = SUPPORT evidence, unsupported =
  CONTRADICT or no evidence (as benchmarks/faithfulness_agreement.py labels them).
- Optionally (`--synthetic N`; off by default: 1,600 of them lowered SciFact claims dev ROC AUC from 0.805
  to 0.770-0.784), synthetic pairs from passages of SciFact abstracts (none cited by SciFact claims dev)
  and MTRAG passages: a sentence of the passage, shortened, is supported; the same sentence with a number
  changed, a name swapped, a negation added, content words swapped for another passage's, or a sentence
  of another passage, is not. The passage (with the original sentence) is the context: a near-copy with one wrong
  fact, the hallucination a grounded generator makes.
The model is an L2 logistic regression (numpy IRLS) on standardised features; the threshold maximises
balanced accuracy on SciFact claims train; SciFact claims dev is reported here as a check.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from core.embedding import get_embedder
from core.settings import Settings
from core.sparse import Bm25Encoder
from core.text import sentences
from diagnostics.judges.logistic import FEATURES, MODEL_PATH, _ctx_sentences, claim_features
from diagnostics.judges.model_train import mutate, shorten
from diagnostics.metrics import balanced_accuracy, roc_auc

DATA = Path("../shared/data")  # relative to the working directory: run from the repository root
NAME_VERSION = "offline-lr-judge-v1"


class Encoder:
    """Sentence embeddings with a cache (contexts repeat across pairs)."""

    def __init__(self, embedder):
        self.embedder, self.cache = embedder, {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            for t, v in zip(todo, self.embedder.encode(todo)):
                self.cache[t] = v
        return np.stack([self.cache[t] for t in texts])


def featurize(pairs, enc: Encoder, bm25: Bm25Encoder, cache: Path | None = None, name: str = "") -> np.ndarray:
    """Features of (claim, contexts, label) pairs (kept in `cache`/<name>.npy when a cache folder is given)."""
    if cache is not None and (cache / f"{name}.npy").exists():
        return np.load(cache / f"{name}.npy")
    split = [_ctx_sentences(contexts) for _, contexts, _ in pairs]
    texts = [c for c, _, _ in pairs] + [s for sents in split for _, s in sents]
    order = sorted(set(texts), key=len)  # one pass, similar lengths batched together
    for i in range(0, len(order), 512):
        enc(order[i : i + 512])
    rows = []
    for (claim, _, _), sents in zip(pairs, split):
        vecs = enc([claim] + [s for _, s in sents])
        feats, _ = claim_features([claim], vecs[:1], sents, vecs[1:], bm25)
        rows.append(feats[0])
    out = np.asarray(rows)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / f"{name}.npy", out)
    return out


def scifact_claim_pairs(data: Path, split: str) -> list[tuple[str, list[str], int]]:
    corpus = {}
    for line in open(data / "scifact_claims" / "corpus_sentences.jsonl"):
        row = json.loads(line)
        corpus[str(row["doc_id"])] = row["abstract"]
    pairs = []
    for line in open(data / "scifact_claims" / f"claims_{split}.jsonl"):
        row = json.loads(line)
        for doc in map(str, row["cited_doc_ids"]):
            if doc in corpus:
                ev = row["evidence"].get(doc)
                label = None if ev is None else ev[0]["label"]
                pairs.append((row["claim"], [" ".join(corpus[doc])], 1 if label == "SUPPORT" else 0))
    return pairs


def _passages(data: Path, rng: random.Random, n: int) -> list[list[str]]:
    """Passages as sentence lists: SciFact abstracts not cited by claims dev, and MTRAG passages."""
    dev_docs = set()
    for line in open(data / "scifact_claims" / "claims_dev.jsonl"):
        dev_docs.update(map(str, json.loads(line)["cited_doc_ids"]))
    sci = []
    for line in open(data / "scifact_claims" / "corpus_sentences.jsonl"):
        row = json.loads(line)
        if str(row["doc_id"]) not in dev_docs and len(row["abstract"]) >= 3:
            sci.append([" ".join(s.split()) for s in row["abstract"]])
    mt = []
    for line in open(data / "mtrag_conv" / "corpus.jsonl"):
        sents = sentences(json.loads(line)["text"], min_words=3)
        if 3 <= len(sents) <= 40:
            mt.append(sents)
    rng.shuffle(sci)
    rng.shuffle(mt)
    half = n // 2
    return sci[:half] + mt[: n - half]


def synthetic_pairs(data: Path, n: int, seed: int = 13) -> list[tuple[str, list[str], int]]:
    rng = random.Random(seed)
    passages = _passages(data, rng, n)
    pairs = []
    for i, sents in enumerate(passages):
        long = [s for s in sents if len(s.split()) >= 8]
        if not long:
            continue
        sent = rng.choice(long)
        context = [" ".join(sents)]
        other = passages[(i + 1 + rng.randrange(len(passages) - 1)) % len(passages)]
        if i % 2 == 0:
            pairs.append((shorten(sent, rng), context, 1))
        elif rng.random() < 0.25:
            pairs.append((rng.choice(other), context, 0))
        else:
            bad = mutate(sent, other, rng)
            pairs.append((bad, context, 0) if bad else (shorten(sent, rng), context, 1))
    return pairs


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1.0, iters: int = 50):
    """L2-regularised logistic regression by Newton's method (IRLS): (coef, intercept)."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    beta = np.zeros(xb.shape[1])
    reg = np.eye(xb.shape[1]) * l2
    reg[-1, -1] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(xb @ beta)))
        grad = xb.T @ (w * (p - y)) + reg @ beta
        hess = (xb * (w * p * (1 - p))[:, None]).T @ xb + reg
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument(
        "--synthetic", type=int, default=0, help="synthetic pairs (default 0: they lowered SciFact dev agreement)"
    )
    ap.add_argument("--real-weight", type=float, default=2.0, help="weight of a SciFact claims train pair")
    ap.add_argument("--l2", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=MODEL_PATH)
    ap.add_argument("--cache", type=Path, default=None, help="keep features here (faster reruns; not in the repo)")
    args = ap.parse_args()
    settings = Settings()
    enc, bm25 = Encoder(get_embedder(settings)), Bm25Encoder.from_settings(settings)

    real = scifact_claim_pairs(args.data, "train")
    synth = synthetic_pairs(args.data, args.synthetic) if args.synthetic else []
    x_real = featurize(real, enc, bm25, args.cache, "scifact_train")
    y_real = np.array([p[2] for p in real], dtype=float)
    x = x_real
    y, w = y_real, np.full(len(real), args.real_weight)
    if synth:
        x_syn = featurize(synth, enc, bm25, args.cache, f"synthetic_{len(synth)}")
        x = np.vstack([x_real, x_syn])
        y = np.concatenate([y_real, [p[2] for p in synth]])
        w = np.concatenate([w, np.ones(len(synth))])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    coef, intercept = fit_logistic((x - mean) / scale, y, w, args.l2)

    def prob(feats):
        return 1 / (1 + np.exp(-(((feats - mean) / scale) @ coef + intercept)))

    p_train = prob(x_real)
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    threshold = float(max(grid, key=lambda t: balanced_accuracy(p_train, y_real, t)))
    dev = scifact_claim_pairs(args.data, "dev")
    p_dev, y_dev = prob(featurize(dev, enc, bm25, args.cache, "scifact_dev")), [p[2] for p in dev]
    model = {
        "name": NAME_VERSION,
        "kind": "logistic regression on standardised features",
        "features": list(FEATURES),
        "mean": [round(float(v), 6) for v in mean],
        "scale": [round(float(v), 6) for v in scale],
        "coef": [round(float(v), 6) for v in coef],
        "intercept": round(intercept, 6),
        "threshold": threshold,
        "trained_on": {
            "scifact_claims_train": len(real),
            "synthetic": len(synth),
            "synthetic_positives": int(sum(p[2] for p in synth)),
            "real_weight": args.real_weight,
            "l2": args.l2,
        },
        "threshold_chosen_on": "scifact_claims_train (max balanced accuracy)",
        "agreement": {
            "scifact_claims_dev": {
                "pairs": len(y_dev),
                "balanced_accuracy": round(balanced_accuracy(p_dev, y_dev, threshold), 4),
                "roc_auc": round(roc_auc(p_dev, y_dev), 4),
            }
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(model, indent=1) + "\n")
    report = {
        "train_balanced_accuracy": round(balanced_accuracy(p_train, y_real, threshold), 4),
        "train_roc_auc": round(roc_auc(p_train, y_real), 4),
        **model["agreement"],
        "threshold": threshold,
        "weights": dict(zip(FEATURES, model["coef"])),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
