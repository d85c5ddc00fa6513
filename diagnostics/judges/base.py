"""The one faithfulness-judge interface (Judge), its per-claim result (ClaimSupport), and the claim splitter
and evidence patterns every judge shares. A new judge subclasses Judge in a module of its own and is named in
diagnostics/judges/factory.py."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from core.text import sentences
from engine.generation.citations import CITATION

NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-zA-Z]{2,}\b")
NEGATION = re.compile(r"\b(?:not|no|never|none|neither|nor|without|cannot|lack|lacks|absent|fails?)\b|n't\b", re.I)


@dataclass
class ClaimSupport:
    claim: str
    score: float
    supported: bool
    source: int | None  # 1-based number of the context holding the best evidence
    evidence: str | None
    cosine: float | None = None  # the heuristic judges' evidence; None for the model and LLM judges
    term_coverage: float | None = None
    missing_numbers: list[str] = field(default_factory=list)
    missing_names: list[str] = field(default_factory=list)
    negation_mismatch: bool = False
    judged_by: str | None = None  # set when another judge than the configured one decided (a fallback)


def split_claims(answer: str) -> list[str]:
    """Sentences of an answer, citations removed, fragments of under 3 words dropped."""
    return sentences(CITATION.sub("", answer), min_words=3)


class Judge:
    """The one faithfulness-judge interface (diagnostics/judges/factory.py picks one by setting).

    `score_claims` gives, per claim, a score in [0, 1], `supported` (score >= threshold), and the evidence
    sentence with the number of the context holding it. `agreement` holds the judge's measured agreement with
    human labels ({data set: {pairs, balanced_accuracy, roc_auc}}), empty when it was never measured.
    """

    name: str = "judge"
    threshold: float = 0.5
    agreement: dict = {}

    def score_claims(self, claims: Sequence[str], contexts: Sequence[str]) -> list[ClaimSupport]:
        raise NotImplementedError

    def score_answer(self, answer: str, contexts: Sequence[str]) -> dict:
        """{"claims": [...], "faithfulness": share of claims supported, "unsupported": count}."""
        claims = self.score_claims(split_claims(answer), contexts)
        if not claims:
            return {"claims": [], "faithfulness": None, "unsupported": 0}
        supported = sum(c.supported for c in claims)
        return {"claims": claims, "faithfulness": supported / len(claims), "unsupported": len(claims) - supported}


# A judge whose balanced accuracy against human labels reaches this on every set it was measured on is taken to
# tell entailment (a contradiction, a wrong number, a paraphrase); below it, its verdicts are marked uncertain.
TRUSTED_BALANCED_ACCURACY = 0.75


def agreement_text(agreement: dict | None) -> str:
    """'balanced accuracy 0.529 on qags_cnndm, 0.719 on scifact_claims_dev' (or that it was never measured)."""
    if not agreement:
        return "whose agreement with human labels was never measured"
    parts = [f"{a.get('balanced_accuracy')} on {name}" for name, a in agreement.items()]
    return "balanced accuracy with human labels " + ", ".join(parts)


def trusted(agreement: dict | None) -> bool:
    """Measured on at least one human-labelled set, and at or above TRUSTED_BALANCED_ACCURACY on every one."""
    scores = [a.get("balanced_accuracy") for a in (agreement or {}).values()]
    return bool(scores) and all(s is not None and s >= TRUSTED_BALANCED_ACCURACY for s in scores)


def judge_card(name: str, agreement: dict | None) -> dict:
    """What a report says of the judge that decided: its name, whether it can be trusted on entailment, and why."""
    return {"name": name, "trusted": trusted(agreement), "agreement_text": agreement_text(agreement)}
