"""Retrieval metrics as pure functions over plain contracts (BEIR's): a ranking is a list of document ids,
best first; relevance is {doc_id: grade}, grade > 0 meaning relevant. Gains are linear in the grade
(trec_eval's nDCG), so results equal pytrec_eval's and ranx's.
"""

from __future__ import annotations

import math
from typing import Sequence

# The cut-offs metrics are reported at (recall@k, nDCG@k, ...) unless a run names others; the one default of
# the audit, experiments, the API and the CLI. numpy is imported where it is used, so importing this is cheap.
DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10)


def hit_at(ranking: Sequence[str], rel: dict[str, int], k: int) -> float:
    return 1.0 if any(rel.get(d, 0) > 0 for d in ranking[:k]) else 0.0


def recall_at(ranking: Sequence[str], rel: dict[str, int], k: int) -> float:
    relevant = {d for d, g in rel.items() if g > 0}
    if not relevant:
        raise ValueError("recall is undefined without a relevant document")
    return len(relevant & set(ranking[:k])) / len(relevant)


def precision_at(ranking: Sequence[str], rel: dict[str, int], k: int) -> float:
    return sum(1 for d in ranking[:k] if rel.get(d, 0) > 0) / k


def reciprocal_rank(ranking: Sequence[str], rel: dict[str, int]) -> float:
    for i, d in enumerate(ranking, 1):
        if rel.get(d, 0) > 0:
            return 1.0 / i
    return 0.0


def ndcg_at(ranking: Sequence[str], rel: dict[str, int], k: int) -> float:
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]))
    ideal = sorted((g for g in rel.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    if idcg == 0:
        raise ValueError("nDCG is undefined without a relevant document")
    return dcg / idcg


def case_metrics(ranking: Sequence[str], rel: dict[str, int], ks: Sequence[int]) -> dict[str, float]:
    """Every metric at every cut-off for one question: {"hit@5": ..., "recall@5": ..., "mrr": ...}."""
    out = {"mrr": reciprocal_rank(ranking, rel)}
    for k in ks:
        out[f"hit@{k}"] = hit_at(ranking, rel, k)
        out[f"recall@{k}"] = recall_at(ranking, rel, k)
        out[f"precision@{k}"] = precision_at(ranking, rel, k)
        out[f"ndcg@{k}"] = ndcg_at(ranking, rel, k)
    return out


def dedupe(doc_ids: Sequence[str]) -> list[str]:
    """Chunks to a document ranking: each document at the rank of its best chunk."""
    return list(dict.fromkeys(doc_ids))


def bootstrap_ci(values: Sequence[float], n: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (scipy.stats.bootstrap, seeded, so a rerun gives the same
    interval). Raises ValueError on no values; one value is its own interval."""
    if not values:
        raise ValueError("no values to bootstrap")
    if len(values) == 1:
        return float(values[0]), float(values[0])
    import numpy as np
    from scipy.stats import bootstrap

    res = bootstrap(
        (np.asarray(values, dtype=float),),
        np.mean,
        n_resamples=n,
        confidence_level=level,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_bootstrap(current: Sequence[float], baseline: Sequence[float], n: int = 2000, seed: int = 0) -> dict:
    """Mean delta (current - baseline) over paired cases, its 95% interval, and a label: improved /
    regressed when the interval excludes 0, inconclusive otherwise."""
    if len(current) != len(baseline) or not current:
        raise ValueError("paired bootstrap needs two equally long, non-empty lists")
    deltas = [c - b for c, b in zip(current, baseline)]
    lo, hi = bootstrap_ci(deltas, n=n, seed=seed)
    label = "improved" if lo > 0 else "regressed" if hi < 0 else "inconclusive"
    return {"delta": sum(deltas) / len(deltas), "ci95": [lo, hi], "label": label}


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Probability that a random positive scores above a random negative (ties count half): scikit-learn's."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(list(labels), list(scores)))


def balanced_accuracy(scores: Sequence[float], labels: Sequence[int], threshold: float) -> float:
    """Mean of the recall of positives (score >= threshold) and of negatives (score < threshold): scikit-learn's."""
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(list(labels), [int(s >= threshold) for s in scores]))
