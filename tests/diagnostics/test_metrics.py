"""Metric functions against an independent implementation (ranx) on a real SciFact run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rank_bm25 import BM25Okapi
from ranx import Qrels, Run, evaluate

from core.sparse import Bm25Encoder
from diagnostics.metrics import (
    bootstrap_ci,
    case_metrics,
    dedupe,
    hit_at,
    mean,
    ndcg_at,
    paired_bootstrap,
    precision_at,
    recall_at,
    reciprocal_rank,
)
from tests.conftest import SCIFACT, scifact_docs


@pytest.fixture(scope="module")
def scifact_run():
    """rank-bm25 over all of SciFact for the 300 test queries: a real run, graded qrels."""
    docs = scifact_docs()
    enc = Bm25Encoder()
    okapi = BM25Okapi([enc.tokens(d["title"] + " " + d["text"]) for d in docs], k1=1.2, b=0.75)
    ids = [d["_id"] for d in docs]
    queries = {json.loads(l)["_id"]: json.loads(l)["text"] for l in open(SCIFACT / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    for line in list(open(SCIFACT / "qrels" / "test.tsv"))[1:]:
        q, d, s = line.strip().split("\t")
        qrels.setdefault(q, {})[d] = int(s)
    run = {}
    for q in qrels:
        scores = okapi.get_scores(list(set(enc.tokens(queries[q]))))
        top = np.argsort(-scores, kind="stable")[:100]
        run[q] = {ids[i]: float(scores[i]) for i in top}
    return qrels, run


@pytest.mark.parametrize("k", [1, 3, 10, 100])
def test_equal_to_ranx_on_scifact(scifact_run, k):
    qrels, run = scifact_run
    # ranx sorts by score; give it strictly decreasing scores in our order so ties cannot reorder.
    ranked = {q: sorted(d, key=lambda x: -d[x]) for q, d in run.items()}
    ranx_run = Run({q: {doc: float(len(r) - i) for i, doc in enumerate(r)} for q, r in ranked.items()})
    ref = evaluate(Qrels(qrels), ranx_run, [f"ndcg@{k}", f"recall@{k}", f"precision@{k}", f"hit_rate@{k}", "mrr"])
    ours = {
        f"ndcg@{k}": mean([ndcg_at(ranked[q], qrels[q], k) for q in qrels]),
        f"recall@{k}": mean([recall_at(ranked[q], qrels[q], k) for q in qrels]),
        f"precision@{k}": mean([precision_at(ranked[q], qrels[q], k) for q in qrels]),
        f"hit_rate@{k}": mean([hit_at(ranked[q], qrels[q], k) for q in qrels]),
        "mrr": mean([reciprocal_rank(ranked[q], qrels[q]) for q in qrels]),
    }
    for name, value in ours.items():
        assert value == pytest.approx(ref[name], abs=1e-9), name
    if k == 10:
        assert 0.6 < ours["ndcg@10"] < 0.75  # BM25 on SciFact, published 0.679


def test_graded_ndcg_by_hand():
    # gains 2 at rank 2 and 1 at rank 3; ideal 2 then 1.
    got = ndcg_at(["x", "a", "b"], {"a": 2, "b": 1}, 3)
    assert got == pytest.approx((2 / np.log2(3) + 1 / 2) / (2 + 1 / np.log2(3)))


def test_case_metrics_and_dedupe():
    m = case_metrics(dedupe(["a", "a", "x", "b"]), {"b": 1}, [1, 3])
    assert m == {
        "mrr": 1 / 3,
        "hit@1": 0.0,
        "recall@1": 0.0,
        "precision@1": 0.0,
        "ndcg@1": 0.0,
        "hit@3": 1.0,
        "recall@3": 1.0,
        "precision@3": 1 / 3,
        "ndcg@3": 0.5,
    }


def test_undefined_metrics_raise():
    with pytest.raises(ValueError):
        recall_at(["a"], {}, 1)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_bootstrap_interval_contains_mean_and_narrows():
    rng = np.random.default_rng(1)
    small = list(rng.random(20))
    big = list(rng.random(2000))
    lo, hi = bootstrap_ci(small)
    assert lo <= mean(small) <= hi
    blo, bhi = bootstrap_ci(big, n=500)
    assert bhi - blo < hi - lo


def test_paired_bootstrap_labels():
    base = [0.5] * 30
    assert paired_bootstrap([0.9] * 30, base)["label"] == "improved"
    assert paired_bootstrap([0.1] * 30, base)["label"] == "regressed"
    noisy = [0.5 + (0.3 if i % 2 else -0.3) for i in range(30)]
    assert paired_bootstrap(noisy, base)["label"] == "inconclusive"


def test_agreement_metrics_by_hand():
    from diagnostics.metrics import balanced_accuracy, roc_auc

    # positives 0.9, 0.4; negatives 0.5, 0.4: pairs won 1 + 1 + 0 + 0.5 (tie) of 4.
    assert roc_auc([0.9, 0.4, 0.5, 0.4], [1, 1, 0, 0]) == 0.625
    # at 0.45: positives caught 1/2, negatives rejected 1/2 (0.5 passes, 0.4 does not).
    assert balanced_accuracy([0.9, 0.4, 0.5, 0.4], [1, 1, 0, 0], 0.45) == 0.5
    assert balanced_accuracy([0.9, 0.4, 0.5, 0.4], [1, 1, 0, 0], 0.95) == 0.5
    assert balanced_accuracy([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0], 0.5) == 1.0
