"""Golden-set candidates from the log: unlabelled queries ranked by signals (thumbs-down, declines,
unsupported claims, a low top score, retrievers that disagree), one per distinct question."""

from __future__ import annotations

import math
import re

from sqlalchemy import select

from service.db import Database
from service.db.querylog import QueryRecord
from service.querylog.rows import ratings, row_dict, scope

LOW_TOP_SCORE = 0.35  # a best dense cosine below this: the corpus may not hold the answer (all-MiniLM-L6-v2)
CANDIDATE_SCAN = 5000  # most recent unlabelled queries in the window considered for candidates
WEIGHTS = {
    "thumbs_down": 3.0,
    "declined": 2.0,
    "unsupported_claims": 2.0,
    "generation_error": 1.0,
    "correct_doc_named": 1.0,
    "low_top_score": 2.0,  # times how far below LOW_TOP_SCORE, as a share of it
    "retrievers_disagree": 1.5,  # times (1 - agreement), below 0.5 agreement
    "thumbs_up": -1.0,
}


def score_candidate(row: dict, downs: int = 0, ups: int = 0, correct_doc: str | None = None) -> dict[str, float]:
    """The signals of one logged query, each with its weight in the ranking (their sum ranks it)."""
    s: dict[str, float] = {}
    if downs:
        s["thumbs_down"] = WEIGHTS["thumbs_down"]
    elif ups:
        s["thumbs_up"] = WEIGHTS["thumbs_up"]
    if correct_doc:
        s["correct_doc_named"] = WEIGHTS["correct_doc_named"]
    if row.get("declined"):
        s["declined"] = WEIGHTS["declined"]
    if row.get("generation_error"):
        s["generation_error"] = WEIGHTS["generation_error"]
    if row.get("unsupported_claims"):
        faith = row.get("faithfulness")
        s["unsupported_claims"] = WEIGHTS["unsupported_claims"] + (1.0 - faith if faith is not None else 0.0)
    top = row.get("top_score")
    if top is not None and top < LOW_TOP_SCORE:
        s["low_top_score"] = WEIGHTS["low_top_score"] * (LOW_TOP_SCORE - top) / LOW_TOP_SCORE
    agree = row.get("retriever_agreement")
    if agree is not None and agree < 0.5:
        s["retrievers_disagree"] = WEIGHTS["retrievers_disagree"] * (1.0 - agree)
    return {k: round(v, 3) for k, v in s.items()}


def _norm_question(q: str) -> str:
    return " ".join(re.findall(r"\w+", q.lower()))


def find_candidates(
    db: Database,
    collections: list[str] | None = None,
    collection: str | None = None,
    since: float | None = None,
    limit: int = 50,
) -> list[dict]:
    """Unlabelled queries ranked by their signals, one per distinct question (the highest-scoring one,
    with how many times it was asked); ties go to the most recent."""
    stmt = scope(select(QueryRecord), collections, collection).where(QueryRecord.labelled_case.is_(None))
    if since is not None:
        stmt = stmt.where(QueryRecord.created_at >= since)
    stmt = stmt.order_by(QueryRecord.created_at.desc()).limit(CANDIDATE_SCAN)
    with db.session(read_only=True) as s:
        rows = [row_dict(r, full=False) for r in s.scalars(stmt).all()]
        thumbs: dict[str, dict] = {}
        for i in range(0, len(rows), 500):
            thumbs.update(ratings(s, [r["id"] for r in rows[i : i + 500]]))
    best: dict[tuple[str, str], dict] = {}
    for r in rows:
        fb = thumbs.get(r["id"], {})
        signals = score_candidate(r, fb.get("down", 0), fb.get("up", 0), fb.get("correct_doc_id"))
        item = {
            **r,
            "score": round(sum(signals.values()), 3),
            "signals": signals,
            "feedback": {"up": fb.get("up", 0), "down": fb.get("down", 0)},
            "correct_doc_id": fb.get("correct_doc_id"),
            "times_asked": 1,
        }
        key = (r["collection"], _norm_question(r["question"]))
        prev = best.get(key)
        if prev is None:
            best[key] = item
        else:
            n = prev["times_asked"] + 1
            if item["score"] > prev["score"]:
                best[key] = item
            best[key]["times_asked"] = n
    ranked = list(best.values())
    for it in ranked:  # a question asked again and again matters more; log2 keeps it a tiebreaker
        if it["times_asked"] > 1:
            it["signals"]["asked_again"] = round(0.25 * math.log2(it["times_asked"]), 3)
            it["score"] = round(sum(it["signals"].values()), 3)
    ranked.sort(key=lambda it: (-it["score"], -it["created_at"]))
    return ranked[:limit]
