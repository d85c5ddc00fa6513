"""QueryLog: the service's query log, the writer (capture.py) plus its reads: one query with its feedback,
the filtered list, feedback and labels, and candidates to label (candidates.py)."""

from __future__ import annotations

import logging
import time
from typing import Callable

from sqlalchemy import exists, func, or_, select, update

from core.errors import InvalidRequestError
from core.settings import Settings
from service.db import Database
from service.db.querylog import Feedback, QueryRecord
from service.querylog.candidates import find_candidates
from service.querylog.capture import QueryWriter, redact, text_hash
from service.querylog.rows import QueryNotFound, feedback_dict, ratings, row_dict, scope

log = logging.getLogger("rag.querylog")

UNSET = object()  # a feedback field the vote leaves as the voter's earlier vote had it


class QueryLog(QueryWriter):
    @classmethod
    def build(cls, settings: Settings, db: Database, engine) -> "QueryLog":
        """The log of a service whose engine (an engine.engine.Engine) scores faithfulness."""

        def scorer():
            from diagnostics.judges.heuristic import FaithfulnessScorer

            return FaithfulnessScorer(engine.retriever.embedder, engine.retriever.bm25)

        out = cls(settings, db, scorer)
        out.store = engine.store
        return out

    store = None  # where a shown query's context texts are read back from (the log keeps their hashes)

    def with_texts(self, row: dict) -> dict:
        """The row's contexts with their texts read back from the store by chunk id; `changed` where the store's
        text is no longer the one the generator saw, `text` null where the chunk is gone. Rows logged before the
        texts left the log keep theirs."""
        missing = [c for c in row.get("contexts") or [] if "text" not in c]
        if not missing:
            return row
        texts: dict = {}
        if self.store is not None:
            try:
                hits = self.store.get_points(row["collection"], [c["chunk_id"] for c in missing], ["text", "source"])
                texts = {str(h.id): h.payload for h in hits}
            except Exception as exc:  # the store is down: the row without its texts, still
                log.warning("could not read the context texts of query %s: %s", row.get("id"), exc)
        for c in missing:
            payload = texts.get(c["chunk_id"]) or {}
            c["text"] = payload.get("text")
            c.setdefault("source", payload.get("source", c.get("doc_id")))
            c["changed"] = c["text"] is not None and text_hash(c["text"]) != c.get("text_hash")
        return row

    # reads
    def _load(self, s, query_id: str) -> QueryRecord | None:
        if "\x00" in query_id:  # no id holds one, and PostgreSQL refuses it in a query
            return None
        return s.get(QueryRecord, query_id)

    def get(self, query_id: str, allowed: Callable[[str], bool] = lambda c: True) -> dict:
        """The full row with its feedback; QueryNotFound when unknown or another collection's."""
        self.flush(timeout=10, ids=[query_id])
        with self.db.session(read_only=True) as s:
            r = self._load(s, query_id)
            if r is None or not allowed(r.collection):
                raise QueryNotFound(query_id)
            out = row_dict(r)
            fb = s.scalars(select(Feedback).where(Feedback.query_id == query_id).order_by(Feedback.id)).all()
            out["feedback"] = [feedback_dict(f) for f in fb]
        return self.with_texts(out)

    def list(
        self,
        collections: list[str] | None = None,
        collection: str | None = None,
        since: float | None = None,
        rating: str | None = None,
        declined: bool | None = None,
        labelled: bool | None = None,
        text: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict:
        """Newest first. `collections`: what the caller may see (None = all). `rating`: up, down, any, none."""
        stmt = scope(select(QueryRecord), collections, collection)
        if since is not None:
            stmt = stmt.where(QueryRecord.created_at >= since)
        fb = select(Feedback.id).where(Feedback.query_id == QueryRecord.id)
        if rating == "down":
            stmt = stmt.where(exists(fb.where(Feedback.rating < 0)))
        elif rating == "up":
            stmt = stmt.where(exists(fb.where(Feedback.rating > 0)))
        elif rating == "any":
            stmt = stmt.where(exists(fb))
        elif rating == "none":
            stmt = stmt.where(~exists(fb))
        if declined is not None:
            stmt = stmt.where(QueryRecord.declined == declined)
        if labelled is not None:
            stmt = stmt.where(
                QueryRecord.labelled_case.is_not(None) if labelled else QueryRecord.labelled_case.is_(None)
            )
        if text:
            like = f"%{text.lower()}%"
            stmt = stmt.where(
                or_(func.lower(QueryRecord.question).like(like), func.lower(QueryRecord.answer).like(like))
            )
        self.flush(timeout=5)
        with self.db.session(read_only=True) as s:
            total = s.scalar(select(func.count()).select_from(stmt.subquery()))
            rows = s.scalars(stmt.order_by(QueryRecord.created_at.desc()).limit(limit).offset(offset)).all()
            items = [row_dict(r, full=False) for r in rows]
            thumbs = ratings(s, [r["id"] for r in items])
        for it in items:
            it["feedback"] = thumbs.get(it["id"], {"up": 0, "down": 0})
        return {"total": total, "items": items}

    # feedback and labels
    def add_feedback(
        self,
        query_id: str,
        rating: int,
        comment: str | None | object = None,
        correct_doc_id: str | None | object = None,
        allowed: Callable[[str], bool] = lambda c: True,
        voter: str | None = None,
    ) -> dict:
        """Record a vote. With `voter` (who rates: the API key's owner id) one vote per voter and query, the
        last one standing: it replaces the voter's earlier vote, keeping the fields passed as UNSET
        (`previous_rating` says what it replaced). Without, every call adds a vote."""
        if rating not in (1, -1):
            raise InvalidRequestError("invalid_rating", "rating is 1 (thumbs up) or -1 (thumbs down)", 422)
        self.flush(timeout=10, ids=[query_id])
        if comment is not UNSET:
            comment = redact(comment, self.settings.query_log_redact_emails, self.settings.query_log_redact_numbers)
        with self.db.session() as s:
            r = self._load(s, query_id)
            if r is None or not allowed(r.collection):
                raise QueryNotFound(query_id)
            f, previous = None, None
            if voter is not None:
                self.db.xact_lock(s, "feedback", f"{query_id}\x1f{voter}")  # SQLite's writers queue anyway
                f = s.scalars(select(Feedback).where(Feedback.query_id == query_id, Feedback.voter == voter)).first()
            if f is None:
                f = Feedback(query_id=query_id, voter=voter, comment=None, correct_doc_id=None)
                s.add(f)
            else:
                previous = f.rating
            f.created_at, f.rating = time.time(), rating
            if comment is not UNSET:
                f.comment = comment
            if correct_doc_id is not UNSET:
                f.correct_doc_id = correct_doc_id
            s.flush()
            return {**feedback_dict(f), "previous_rating": previous}

    def mark_labelled(self, query_id: str, case_id: str) -> None:
        with self.db.session() as s:
            s.execute(update(QueryRecord).where(QueryRecord.id == query_id).values(labelled_case=case_id))

    # candidates
    def candidates(
        self,
        collections: list[str] | None = None,
        collection: str | None = None,
        since: float | None = None,
        limit: int = 50,
    ) -> list[dict]:
        """Unlabelled queries ranked by their signals, one per distinct question (the highest-scoring one,
        with how many times it was asked); ties go to the most recent."""
        self.flush(timeout=5)
        return find_candidates(self.db, collections, collection, since, limit)
