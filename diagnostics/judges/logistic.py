"""A small trained offline faithfulness judge: logistic regression over evidence features of a claim and
its contexts (embedding cosines to the best context sentences, term and bigram coverage, the longest
run of the claim's words in one sentence, numbers, names and negations the contexts lack, length).

It has the FaithfulnessScorer interface (`score_claims`, `score_answer`, `name`, `threshold`), so the audit
uses it in place of the hand-weighted heuristic. Its weights are a few KB of JSON in the package
(diagnostics/judges/models/faithfulness_lr.json), trained by `python -m diagnostics.judges.logistic_train` on
SciFact claims train (never QAGS); the threshold is chosen on SciFact claims train, and `agreement` holds its measured
agreement with human labels (benchmarks/faithfulness_agreement.py --write-agreement writes it).

Measured: SciFact claims dev balanced accuracy 0.740, ROC AUC 0.805 (the heuristic: 0.722 / 0.792); QAGS
CNN/DM 0.527 / 0.571 (the heuristic: 0.514-0.529 / 0.779). It is better in its domain and does not transfer
to news summaries: there its decisions are no better than chance, and reports say so.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from core.embedding import Embedder
from core.sparse import Bm25Encoder
from core.text import sentences
from diagnostics.judges.base import NAME, NEGATION, NUMBER, ClaimSupport, split_claims
from diagnostics.judges.heuristic import FaithfulnessScorer

MODEL_PATH = Path(__file__).resolve().parent / "models" / "faithfulness_lr.json"
FEATURES = (
    "cos_max",
    "cos_2nd",
    "cos_top3_mean",
    "cos_context",
    "term_cov",
    "term_cov_best",
    "term_cov_top3",
    "term_cov_lexbest",
    "bigram_cov",
    "lcs_ratio",
    "novel_terms",
    "missing_numbers",
    "has_numbers",
    "missing_names",
    "has_names",
    "negation_mismatch",
    "claim_negated",
    "log_words",
)
WORD = re.compile(r"\w+")


def _ctx_sentences(contexts: Sequence[str]) -> list[tuple[int, str]]:
    out = []
    for i, c in enumerate(contexts, 1):
        out.extend((i, s) for s in (sentences(c, min_words=3) or [c]))
    return out


def _lcs(a: list[str], b: list[str]) -> int:
    """Longest common subsequence of two word lists."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def claim_features(
    claims: Sequence[str],
    claim_vecs: np.ndarray,
    sents: list[tuple[int, str]],
    sent_vecs: np.ndarray,
    bm25: Bm25Encoder,
) -> tuple[np.ndarray, list[int]]:
    """(features [n_claims, len(FEATURES)], index of each claim's best-evidence sentence)."""
    cos = claim_vecs @ sent_vecs.T
    joined = "\n".join(s for _, s in sents)
    lowered = joined.lower()
    ctx_terms = set(bm25.term_counts(joined))
    sent_terms = [set(bm25.term_counts(s)) for _, s in sents]
    sent_words = [WORD.findall(s.lower()) for _, s in sents]
    bigrams = {(w[i], w[i + 1]) for w in sent_words for i in range(len(w) - 1)}
    ctx_numbers = set(NUMBER.findall(joined))
    mean_vec = sent_vecs.mean(axis=0)
    mean_vec = mean_vec / (np.linalg.norm(mean_vec) or 1.0)
    rows, bests = [], []
    for ci, claim in enumerate(claims):
        order = np.argsort(-cos[ci])
        best = int(order[0])
        top3 = [int(i) for i in order[:3]]
        terms = set(bm25.term_counts(claim))
        words = WORD.findall(claim.lower())

        def cov(pool: set) -> float:
            return len(terms & pool) / len(terms) if terms else 1.0

        lexbest = max(range(len(sents)), key=lambda i: len(terms & sent_terms[i])) if terms else best
        cbig = {(words[i], words[i + 1]) for i in range(len(words) - 1)}
        lcs_pool = dict.fromkeys(top3 + [lexbest])
        lcs = max(_lcs(words, sent_words[i]) for i in lcs_pool) / len(words) if words else 1.0
        numbers = [n for n in dict.fromkeys(NUMBER.findall(claim)) if n not in ctx_numbers]
        names = [n for n in dict.fromkeys(NAME.findall(claim)) if n.lower() not in lowered]
        negated = bool(NEGATION.search(claim))
        rows.append(
            [
                float(cos[ci, best]),
                float(cos[ci, order[1]]) if len(order) > 1 else float(cos[ci, best]),
                float(np.mean(cos[ci, top3])),
                float(claim_vecs[ci] @ mean_vec),
                cov(ctx_terms),
                cov(sent_terms[best]),
                cov(set().union(*(sent_terms[i] for i in top3))),
                cov(sent_terms[lexbest]),
                len(cbig & bigrams) / len(cbig) if cbig else 1.0,
                lcs,
                math.log1p(len(terms - ctx_terms)),
                float(len(numbers)),
                float(bool(NUMBER.search(claim))),
                float(len(names)),
                float(bool(NAME.search(claim))),
                float(negated != bool(NEGATION.search(sents[best][1]))),
                float(negated),
                math.log1p(len(words)),
            ]
        )
        bests.append(best)
    return np.asarray(rows, dtype=np.float64), bests


class LearnedFaithfulnessScorer(FaithfulnessScorer):
    """The trained judge; `score` is its probability that the claim is supported."""

    margin = 0.05

    def __init__(self, embedder: Embedder, bm25: Bm25Encoder, model: dict):
        super().__init__(embedder, bm25, threshold=float(model["threshold"]))
        assert tuple(model["features"]) == FEATURES, "the judge's weights were trained on other features"
        self.name = model["name"]
        self.mean = np.asarray(model["mean"])
        self.scale = np.asarray(model["scale"])
        self.coef = np.asarray(model["coef"])
        self.intercept = float(model["intercept"])
        self.agreement = model.get("agreement") or {}

    def probability(self, feats: np.ndarray) -> np.ndarray:
        z = ((feats - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def score_claims(self, claims: Sequence[str], contexts: Sequence[str]) -> list[ClaimSupport]:
        if not contexts:
            raise ValueError("faithfulness needs at least one context")
        if not claims:
            return []
        sents = _ctx_sentences(contexts)
        vecs = self.embedder.encode(list(claims) + [s for _, s in sents])
        feats, bests = claim_features(claims, vecs[: len(claims)], sents, vecs[len(claims) :], self.bm25)
        probs = self.probability(feats)
        out = []
        for ci, claim in enumerate(claims):
            f = dict(zip(FEATURES, feats[ci]))
            joined = "\n".join(contexts)
            numbers = [n for n in dict.fromkeys(NUMBER.findall(claim)) if n not in set(NUMBER.findall(joined))]
            names = [n for n in dict.fromkeys(NAME.findall(claim)) if n.lower() not in joined.lower()]
            p = float(probs[ci])
            out.append(
                ClaimSupport(
                    claim,
                    round(p, 4),
                    p >= self.threshold,
                    sents[bests[ci]][0],
                    sents[bests[ci]][1],
                    round(f["cos_max"], 4),
                    round(f["term_cov"], 4),
                    numbers,
                    names,
                    bool(f["negation_mismatch"]),
                )
            )
        return out


def load_model(path: Path = MODEL_PATH) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


__all__ = ["FEATURES", "LearnedFaithfulnessScorer", "claim_features", "load_model", "split_claims"]
