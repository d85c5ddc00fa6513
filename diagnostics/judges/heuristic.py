"""An offline faithfulness scorer: is each sentence of an answer supported by the retrieved contexts?

No NLI or cross-encoder model ships offline here, so the scorer combines the embedding model with lexical
evidence: the best cosine between the claim and any context sentence; the share of the claim's content
terms (BM25 tokens: stemmed, stop words removed) found in the contexts; and penalties for numbers and
names in the claim that no context contains (the commonest hallucinations) and for a negation on one side
only of the claim and its best evidence (the cheapest sign of a contradiction). It is measured, not assumed:
benchmarks/faithfulness_agreement.py reports its agreement with human labels (QAGS, SciFact claims).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from core.embedding import Embedder
from core.sparse import Bm25Encoder
from core.text import sentences
from diagnostics.judges.base import NAME, NEGATION, NUMBER, ClaimSupport, Judge, split_claims

__all__ = ["FaithfulnessScorer", "ClaimSupport", "Judge", "split_claims", "THRESHOLD"]

W_COS, W_TERMS, P_NUMBER, P_NAME, P_NEGATION = 0.55, 0.45, 0.25, 0.15, 0.2
# Set a priori. The best threshold on SciFact claims train is 0.53, which gives the same dev balanced
# accuracy within 0.003 (benchmarks/faithfulness_agreement.py); neither transfers to QAGS (see README).
THRESHOLD = 0.6


def _sentences(text: str) -> list[str]:
    return sentences(text, min_words=3) or [text]


class FaithfulnessScorer(Judge):
    name = "offline-embedding-lexical-v1"
    # Measured by benchmarks/faithfulness_agreement.py (threshold 0.6); QAGS was never used for tuning.
    agreement = {
        "scifact_claims_dev": {"pairs": 340, "balanced_accuracy": 0.719, "roc_auc": 0.792},
        "qags_cnndm": {"pairs": 714, "balanced_accuracy": 0.529, "roc_auc": 0.779},
    }

    def __init__(self, embedder: Embedder, bm25: Bm25Encoder, threshold: float = THRESHOLD):
        self.embedder, self.bm25, self.threshold = embedder, bm25, threshold

    def score_claims(self, claims: Sequence[str], contexts: Sequence[str]) -> list[ClaimSupport]:
        """One ClaimSupport per claim. Raises ValueError when there are no contexts to check against."""
        if not contexts:
            raise ValueError("faithfulness needs at least one context")
        if not claims:
            return []
        sents = [(i, s) for i, c in enumerate(contexts, 1) for s in _sentences(c)]
        vecs = self.embedder.encode(list(claims) + [s for _, s in sents])
        claim_vecs, sent_vecs = vecs[: len(claims)], vecs[len(claims) :]
        cos = claim_vecs @ sent_vecs.T
        joined = "\n".join(contexts)
        lowered = joined.lower()
        ctx_terms = set(self.bm25.term_counts(joined))
        ctx_numbers = set(NUMBER.findall(joined))
        out = []
        for ci, claim in enumerate(claims):
            best = int(np.argmax(cos[ci]))
            terms = set(self.bm25.term_counts(claim))
            coverage = len(terms & ctx_terms) / len(terms) if terms else 1.0
            numbers = [n for n in dict.fromkeys(NUMBER.findall(claim)) if n not in ctx_numbers]
            names = [n for n in dict.fromkeys(NAME.findall(claim)) if n.lower() not in lowered]
            score = W_COS * float(cos[ci, best]) + W_TERMS * coverage
            # A negation on one side only is the cheapest sign of a contradiction.
            flipped = bool(NEGATION.search(claim)) != bool(NEGATION.search(sents[best][1]))
            score -= P_NUMBER * bool(numbers) + P_NAME * bool(names) + P_NEGATION * flipped
            score = float(min(1.0, max(0.0, score)))
            out.append(
                ClaimSupport(
                    claim,
                    round(score, 4),
                    score >= self.threshold,
                    sents[best][0],
                    sents[best][1],
                    round(float(cos[ci, best]), 4),
                    round(coverage, 4),
                    numbers,
                    names,
                    flipped,
                )
            )
        return out
