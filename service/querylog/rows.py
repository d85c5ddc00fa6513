"""Reading the query log's tables: rows and feedback as dicts, the collection scope of a query, thumbs
counts per query, `parse_since` for the `since` filters, and `QueryNotFound`."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from sqlalchemy import case, func, select

from core.errors import InvalidRequestError
from service.db.querylog import Feedback, QueryRecord


class QueryNotFound(InvalidRequestError):
    def __init__(self, query_id: str):
        super().__init__("query_not_found", f"no logged query {query_id[:64]!r}", 404)


def parse_since(text: str | float | None, now: float | None = None) -> float | None:
    """'7d', '24h', '30m', '2w', '90s' (ago) or an ISO date/time -> Unix seconds; None/'' -> None."""
    if text is None or text == "":
        return None
    now = time.time() if now is None else now
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[m.group(2)]
        return now - float(m.group(1)) * unit
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRequestError(
            "invalid_since", f"since is a duration like 7d, 24h, 30m or an ISO date, not {text[:40]!r}"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


SUMMARY_FIELDS = (
    "id",
    "created_at",
    "collection",
    "route",
    "question",
    "answer",
    "generator",
    "declined",
    "generation_error",
    "top_score",
    "retriever_agreement",
    "faithfulness",
    "unsupported_claims",
    "labelled_case",
    "redacted",
)


def row_dict(r: QueryRecord, full: bool = True) -> dict:
    if not full:
        return {k: getattr(r, k) for k in SUMMARY_FIELDS}
    return {c.name: getattr(r, c.key) for c in QueryRecord.__table__.columns}


def feedback_dict(f: Feedback) -> dict:
    return {
        "id": f.id,
        "query_id": f.query_id,
        "created_at": f.created_at,
        "rating": f.rating,
        "comment": f.comment,
        "correct_doc_id": f.correct_doc_id,
    }


def scope(stmt, collections: list[str] | None, collection: str | None):
    """`stmt` limited to one collection, and to those the caller may see (None = all)."""
    if collection:
        stmt = stmt.where(QueryRecord.collection == collection)
    if collections is not None:
        stmt = stmt.where(QueryRecord.collection.in_(collections))
    return stmt


def ratings(s, ids: list[str]) -> dict[str, dict]:
    """Thumbs up and down counts (and a named correct document) of these queries, in session `s`."""
    if not ids:
        return {}
    rows = s.execute(
        select(
            Feedback.query_id,
            func.sum(case((Feedback.rating > 0, 1), else_=0)),
            func.sum(case((Feedback.rating < 0, 1), else_=0)),
            func.max(Feedback.correct_doc_id),
        )
        .where(Feedback.query_id.in_(ids))
        .group_by(Feedback.query_id)
    ).all()
    return {q: {"up": int(u or 0), "down": int(d or 0), "correct_doc_id": c} for q, u, d, c in rows}
