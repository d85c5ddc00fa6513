"""Does an answer state the reference answer's facts? Coverage by the faithfulness judge (each reference claim
supported by some answer sentence), plus cheap checks a similarity judge is blind to:

- key facts: the reference's numbers and names (and code-like tokens such as `all-MiniLM-L6-v2`) that the
  answer never states make it wrong: an answer that circles the topic without the asked fact is not right;
- polarity: the reference says one direction (reduces, lower, fewer...) and the answer the other, or the
  answer hedges ("it is unclear whether") where the reference asserts: the verdict stays the judge's and is
  marked uncertain, since a rule this cheap cannot prove a contradiction.

Pure but for the judge passed in (tested with a stand-in judge in tests/diagnostics/test_verdicts.py).
"""

from __future__ import annotations

import re

from diagnostics.judges.base import NEGATION, NUMBER, Judge, split_claims
from engine.generation.citations import CITATION

# Capitalised words not at a sentence start, and tokens mixing letters with digits or inner hyphens/dots.
NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-zA-Z]{2,}\b")
CODE = re.compile(
    r"\b(?=[\w.-]*\d)(?=[\w.-]*[A-Za-z])[\w]+(?:[.-][\w]+)+\b"  # all-MiniLM-L6-v2, 1.16.0
    r"|\b[a-z]+[A-Z]\w*\b"  # camelCase
    r"|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b"  # RAG_DATA_DIR
)
UP = {
    "increase",
    "increases",
    "increased",
    "increasing",
    "raise",
    "raises",
    "raised",
    "higher",
    "more",
    "rise",
    "rises",
    "rose",
    "greater",
    "improve",
    "improves",
    "improved",
    "up",
    "boost",
    "boosts",
    "boosted",
    "gain",
}
DOWN = {
    "decrease",
    "decreases",
    "decreased",
    "decreasing",
    "reduce",
    "reduces",
    "reduced",
    "reducing",
    "lower",
    "lowers",
    "lowered",
    "less",
    "fewer",
    "fall",
    "falls",
    "fell",
    "decline",
    "declines",
    "declined",
    "down",
    "worsen",
    "worsens",
    "worsened",
    "drop",
    "drops",
    "dropped",
    "loss",
}
HEDGE = re.compile(r"\b(?:unclear|uncertain|not known|unknown|may or may not|it is not clear|no evidence)\b", re.I)
STOP_NAMES = {"The", "This", "That", "These", "Those", "What", "Which", "When", "Where", "How", "Why", "Who", "And"}


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def token_f1(a: str, b: str) -> float:
    ta, tb = _tokens(a), _tokens(b)
    if not ta or not tb:
        return 0.0
    common = sum(min(ta.count(t), tb.count(t)) for t in set(ta))
    if common == 0:
        return 0.0
    p, r = common / len(ta), common / len(tb)
    return 2 * p * r / (p + r)


def key_facts(text: str) -> list[str]:
    """The numbers, names and code-like tokens of a text, in order, once each."""
    codes = CODE.findall(text)
    rest = CODE.sub(" ", text)  # the numbers and names inside a code token are part of it, not facts of their own
    found = NUMBER.findall(rest) + codes + [n for n in NAME.findall(rest) if n not in STOP_NAMES]
    return list(dict.fromkeys(found))


def missing_facts(answer: str, reference: str) -> list[str]:
    """Key facts of the reference the answer never states (case-insensitive; a number compared by its digits)."""
    low = answer.lower()
    digits = {re.sub(r"\D", "", n) for n in NUMBER.findall(answer)}
    out = []
    words = set(_tokens(answer))
    for fact in key_facts(reference):
        if NUMBER.fullmatch(fact):
            if re.sub(r"\D", "", fact) not in digits:
                out.append(fact)
        elif fact.lower() in low:
            continue
        else:
            # "CX3CR1-induced" vs "CX3CR1-caused": a code-like token is stated when its parts that carry digits are
            parts = [x.lower() for x in re.split(r"[-.]", fact) if re.search(r"\d", x)]
            if not parts or not all(x in words for x in parts):
                out.append(fact)
    return out


def direction(text: str) -> set[str]:
    words = set(_tokens(text))
    return ({"up"} if words & UP else set()) | ({"down"} if words & DOWN else set())


def polarity_doubts(answer: str, reference: str) -> list[str]:
    """Reasons to doubt a 'covers the reference' decision: opposite directions, or a hedge against an assertion."""
    out = []
    ra, rr = direction(answer), direction(reference)
    if rr and ra and rr != ra and len(rr) == 1:
        out.append(
            f"the reference says {'up' if 'up' in rr else 'down'} and the answer {'/'.join(sorted(ra))}: "
            "a possible contradiction the judge may not see"
        )
    if HEDGE.search(answer) and not HEDGE.search(reference):
        out.append("the answer hedges where the reference asserts")
    single = len(split_claims(answer)) <= 1 and len(split_claims(reference)) <= 1
    if single and bool(NEGATION.search(answer)) != bool(NEGATION.search(reference)):
        # measured (benchmarks/subtle_faults.py): the default judge passed 159 of 159 negated answers
        out.append("a negation on one side only (answer or reference): a possible contradiction the judge may not see")
    return out


def correctness(judge: Judge, answer: str, reference: str, margin: float = 0.05) -> dict:
    """Each reference claim must be supported by some answer sentence (the judge, the answer's sentences as its
    material), and the reference's key facts must be stated. Answer sentences that support no reference claim
    are reported as `extra` (a behaviour signal: verbose, not wrong)."""
    ref_claims = split_claims(reference) or [reference.strip()]
    ans_claims = split_claims(answer) or [CITATION.sub("", answer).strip()]
    covered = judge.score_claims(ref_claims, ans_claims)
    back = judge.score_claims(ans_claims, [reference])
    n_cov = sum(c.supported for c in covered)
    plain = " ".join(ans_claims)
    missing = missing_facts(plain, reference)
    return {
        "correct": n_cov == len(ref_claims) and not missing,
        "coverage": round(n_cov / len(ref_claims), 4),
        "covered": n_cov,
        "reference_claims": len(ref_claims),
        "missing": [c.claim for c in covered if not c.supported],
        "missing_facts": missing,
        "extra": [c.claim for c in back if not c.supported],
        "token_f1": round(token_f1(plain, reference), 4),
        "uncertain": [
            f"reference claim near the judge's threshold: {c.claim[:100]}"
            for c in covered
            if abs(c.score - judge.threshold) < margin
        ]
        + polarity_doubts(plain, reference)
        + [  # a reference claim and the answer sentence that covers it: a negation on one side only
            f"a negation on one side only: {c.claim[:80]!r} vs {c.evidence[:80]!r}"
            for c in covered
            if c.supported and c.evidence and bool(NEGATION.search(c.claim)) != bool(NEGATION.search(c.evidence))
        ]
        + _number_doubts(missing, plain),
    }


def _number_doubts(missing: list[str], answer: str) -> list[str]:
    """A reference number the answer lacks while it states other numbers may be a conversion or a rounding."""
    if any(NUMBER.fullmatch(m) for m in missing) and NUMBER.search(answer):
        found = ", ".join(dict.fromkeys(NUMBER.findall(answer)))
        return [f"the answer states other numbers ({found[:80]}): a unit conversion or rounding may agree"]
    return []
