"""Agreement of the offline faithfulness scorer with human labels.

    python benchmarks/faithfulness_agreement.py [--limit N]

- SciFact claims (../shared/data/scifact_claims): a claim against the abstract it cites. Supported = the
  annotators' SUPPORT evidence; unsupported = CONTRADICT evidence, or no evidence in a cited abstract.
  The threshold is chosen on train (max balanced accuracy) and reported on dev.
- QAGS (../shared/data/qags): each summary sentence against its article; supported = a majority of the 3
  annotators said yes. Never used for tuning.
Reports balanced accuracy at the threshold and ROC AUC (threshold-free).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from core.embedding import get_embedder
from core.settings import Settings
from core.sparse import Bm25Encoder
from diagnostics.faithfulness import FaithfulnessScorer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def roc_auc(scores: list[float], labels: list[int]) -> float:
    """Probability a random positive scores above a random negative (ties count half)."""
    s, y = np.asarray(scores), np.asarray(labels)
    pos, neg = s[y == 1], s[y == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def balanced_accuracy(scores, labels, threshold: float) -> float:
    s, y = np.asarray(scores), np.asarray(labels)
    pred = s >= threshold
    return float(0.5 * ((pred[y == 1]).mean() + (~pred[y == 0]).mean()))


def scifact_pairs(split: str, limit: int | None):
    corpus = {}
    for line in open(DATA / "scifact_claims" / "corpus_sentences.jsonl"):
        row = json.loads(line)
        corpus[str(row["doc_id"])] = row["abstract"]
    pairs = []
    for line in open(DATA / "scifact_claims" / f"claims_{split}.jsonl"):
        row = json.loads(line)
        for doc in row["cited_doc_ids"]:
            doc = str(doc)
            if doc not in corpus:
                continue
            ev = row["evidence"].get(doc)
            label = None if ev is None else ev[0]["label"]
            pairs.append((row["claim"], [" ".join(corpus[doc])], 1 if label == "SUPPORT" else 0))
    return pairs[:limit] if limit else pairs


def qags_pairs(limit: int | None):
    pairs = []
    for line in open(DATA / "qags" / "mturk_cnndm.jsonl"):
        row = json.loads(line)
        for s in row["summary_sentences"]:
            yes = sum(r["response"] == "yes" for r in s["responses"])
            pairs.append((s["sentence"], [row["article"]], 1 if yes * 2 > len(s["responses"]) else 0))
    return pairs[:limit] if limit else pairs


def score(scorer: FaithfulnessScorer, pairs) -> tuple[list[float], list[int]]:
    scores = [scorer.score_claims([claim], ctx)[0].score for claim, ctx, _ in pairs]
    return scores, [label for _, _, label in pairs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None, help="first N pairs of each set (quick runs)")
    args = ap.parse_args()
    settings = Settings()
    scorer = FaithfulnessScorer(get_embedder(settings), Bm25Encoder.from_settings(settings))

    train_s, train_y = score(scorer, scifact_pairs("train", args.limit))
    grid = [round(t, 2) for t in np.arange(0.30, 0.90, 0.01)]
    best = max(grid, key=lambda t: balanced_accuracy(train_s, train_y, t))
    result = {
        "threshold_chosen_on_scifact_train": best,
        "scifact_train": {
            "pairs": len(train_y),
            "positives": int(sum(train_y)),
            "balanced_accuracy": round(balanced_accuracy(train_s, train_y, best), 4),
            "roc_auc": round(roc_auc(train_s, train_y), 4),
        },
    }
    for name, pairs in (("scifact_dev", scifact_pairs("dev", args.limit)), ("qags_cnndm", qags_pairs(args.limit))):
        s, y = score(scorer, pairs)
        result[name] = {
            "pairs": len(y),
            "positives": int(sum(y)),
            "balanced_accuracy": round(balanced_accuracy(s, y, best), 4),
            "balanced_accuracy_at_default_threshold": round(balanced_accuracy(s, y, scorer.threshold), 4),
            "roc_auc": round(roc_auc(s, y), 4),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
