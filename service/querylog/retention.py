"""Retention of the query log: queries older than `query_log_retention_days`, and their feedback, are purged
at start-up and every PURGE_EVERY_S by the log's writer thread."""

from __future__ import annotations

import logging
import time

from sqlalchemy import delete, select

from service.db import Database
from service.db.querylog import Feedback, QueryRecord

log = logging.getLogger("rag.querylog")

PURGE_EVERY_S = 3600.0


def purge(db: Database, days: float | None, now: float | None = None) -> int:
    """Delete queries (and their feedback) older than `days`; returns how many queries. No-op when unset."""
    if not days:
        return 0
    cutoff = (time.time() if now is None else now) - days * 86400
    with db.session() as s:
        old = select(QueryRecord.id).where(QueryRecord.created_at < cutoff)
        s.execute(delete(Feedback).where(Feedback.query_id.in_(old)))
        n = s.execute(delete(QueryRecord).where(QueryRecord.created_at < cutoff)).rowcount
    if n:
        log.info("query log: purged %d queries older than %g days", n, days)
    return n or 0
