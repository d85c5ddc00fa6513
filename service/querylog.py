"""The query log: every query the service answers, kept to be rated, triaged and labelled into golden sets.

- Capture: `/v1/query` (JSON and streamed) and the chat facade give each request a query id up front (in the
  response), then hand the result to `QueryLog.record`, which builds the row at once (question, collection,
  settings, contexts with stage ranks, answer, citations, generator, timings, the best dense score and how
  much the two retrievers agree) and queues it. One background thread scores the answer's faithfulness when
  it is cheap (an LLM's answer; the extractive generator is faithful by construction) and writes the row,
  so the request never waits on the database. A lookup of an id still in the queue waits for its write.
- Opt-out (`query_log=false`: no row, `query_id` null), retention (`query_log_retention_days`: older rows and
  their feedback are purged at start-up and hourly), redaction (`query_log_redact_emails` / `_numbers`: the
  question, answer and feedback comments are stored redacted; contexts are corpus text and kept as they are).
- Candidates to label: unlabelled queries ranked by signals (thumbs-down, declines, unsupported claims, a low
  top score, retrievers that disagree), one per distinct question.
Storage is the service database (service/db): SQLite in the data dir, or PostgreSQL by RAG_DATABASE_URL.
"""

from __future__ import annotations

import logging
import math
import queue
import re
import threading
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Callable, Iterable

from sqlalchemy import case, delete, exists, func, insert, or_, select, update

from core.errors import InvalidRequestError
from core.settings import Settings
from service.db import Database
from service.db.querylog import Feedback, QueryRecord

log = logging.getLogger("rag.querylog")

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
# Digits joined by at most one separator each: "+44 20 7946 0958", "4111-1111-1111-1111", "12345".
NUMBER = re.compile(r"\+?\(?\d(?:[ ().\-/]{0,2}\d)+")
MIN_REDACTED_DIGITS = 5
PURGE_EVERY_S = 3600.0
WRITE_WAIT_S, WRITE_BATCH = 0.2, 200  # the query-log writer batches rows
TOP_N = 10  # documents per stage kept in stage_tops, and compared for retriever agreement
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


class QueryNotFound(InvalidRequestError):
    def __init__(self, query_id: str):
        super().__init__("query_not_found", f"no logged query {query_id[:64]!r}", 404)


# -- pure parts -------------------------------------------------------------------------------------------


def redact(text: str | None, emails: bool, numbers: bool) -> str | None:
    if not text:
        return text
    if emails:
        text = EMAIL.sub("[email]", text)
    if numbers:
        text = NUMBER.sub(
            lambda m: "[number]" if sum(ch.isdigit() for ch in m.group()) >= MIN_REDACTED_DIGITS else m.group(), text
        )
    return text


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


def _top_docs(hits: list[tuple[str, str, float]], n: int = TOP_N) -> list[list]:
    out, seen = [], set()
    for _, doc_id, score in hits:
        if doc_id not in seen:
            seen.add(doc_id)
            out.append([doc_id, round(float(score), 4)])
            if len(out) == n:
                break
    return out


def build_row(query_id: str, result, params, route: str, settings: Settings, options: dict | None = None) -> dict:
    """The row for one answered query (an engine.answer.AnswerResult), redacted as the settings say."""
    emails, numbers = settings.query_log_redact_emails, settings.query_log_redact_numbers
    gen = result.generation
    stages = result.retrieval.stages
    tops = {name: _top_docs(sl.hits) for name, sl in stages.items()}
    top_score = None
    if "dense" in stages and stages["dense"].hits:
        top_score = round(float(stages["dense"].hits[0][2]), 4)
    agreement = None
    if tops.get("sparse") and tops.get("dense"):
        a, b = {d for d, _ in tops["sparse"]}, {d for d, _ in tops["dense"]}
        agreement = round(len(a & b) / max(len(a), len(b)), 4)
    question = redact(result.question, emails, numbers)
    answer = redact(gen.answer, emails, numbers) if gen else None
    return {
        "id": query_id,
        "created_at": time.time(),
        "collection": result.collection,
        "route": route,
        "question": question,
        "settings": {**asdict(params), **(options or {})},
        "contexts": [asdict(c) for c in result.retrieval.contexts],
        "stage_tops": tops,
        "answer": answer,
        "citations": [asdict(c) for c in gen.citations] if gen else [],
        "generator": gen.generator if gen else None,
        "declined": bool(gen and gen.declined),
        "generation_error": (gen.error or {}).get("code") if gen and gen.error else None,
        "timings": dict(result.timings_ms),
        "top_score": top_score,
        "retriever_agreement": agreement,
        "faithfulness": None,
        "unsupported_claims": None,
        "claims": None,
        "redacted": bool((emails or numbers) and (question != result.question or (gen and answer != gen.answer))),
        "labelled_case": None,
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


# -- the log ----------------------------------------------------------------------------------------------

_SUMMARY_FIELDS = (
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


def _row_dict(r: QueryRecord, full: bool = True) -> dict:
    if not full:
        return {k: getattr(r, k) for k in _SUMMARY_FIELDS}
    return {c.name: getattr(r, c.key) for c in QueryRecord.__table__.columns}


def _feedback_dict(f: Feedback) -> dict:
    return {
        "id": f.id,
        "query_id": f.query_id,
        "created_at": f.created_at,
        "rating": f.rating,
        "comment": f.comment,
        "correct_doc_id": f.correct_doc_id,
    }


class QueryLog:
    def __init__(self, settings: Settings, db: Database, scorer_factory: Callable[[], object] | None = None):
        """`scorer_factory` builds a diagnostics FaithfulnessScorer when an LLM answer is first scored."""
        self.settings, self.db = settings, db
        self.enabled = settings.query_log
        self._scorer_factory, self._scorer = scorer_factory, None
        self._queue: queue.Queue = queue.Queue()
        self._pending: set[str] = set()
        self._cond = threading.Condition()
        self._last_purge = 0.0
        self._thread = threading.Thread(target=self._run, name="querylog", daemon=True)
        self._thread.start()

    @classmethod
    def build(cls, settings: Settings, db: Database, engine) -> "QueryLog":
        """The log of a service whose engine (an engine.engine.Engine) scores faithfulness."""

        def scorer():
            from diagnostics.judges.heuristic import FaithfulnessScorer

            return FaithfulnessScorer(engine.retriever.embedder, engine.retriever.bm25)

        return cls(settings, db, scorer)

    # capture
    def new_id(self) -> str | None:
        """The id a response carries; None when logging is off."""
        return uuid.uuid4().hex if self.enabled else None

    def record(self, query_id: str | None, result, params, route: str, options: dict | None = None) -> None:
        """Queue one answered query; never raises (a log failure must not fail the answer)."""
        if not query_id or not self.enabled:
            return
        try:
            row = build_row(query_id, result, params, route, self.settings, options)
            texts = [c.text for c in result.retrieval.contexts]
        except Exception:
            log.exception("could not build the query-log row of %s", query_id)
            return
        with self._cond:
            self._pending.add(query_id)
        self._queue.put((row, texts))

    def _run(self) -> None:
        while True:
            if time.time() - self._last_purge > PURGE_EVERY_S:
                self._last_purge = time.time()
                try:
                    self.purge()
                except Exception:
                    log.exception("query-log purge failed")
            try:
                item = self._queue.get(timeout=60)
            except queue.Empty:
                continue
            if item is None:
                return
            batch, stop = [item], False
            # Rows are written in batches (one transaction, one executemany): a row per transaction cost
            # every request a few ms of the GIL. A row waits at most WRITE_WAIT_S for company.
            deadline = time.monotonic() + WRITE_WAIT_S
            while len(batch) < WRITE_BATCH and (left := deadline - time.monotonic()) > 0:
                try:
                    nxt = self._queue.get(timeout=left)
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[tuple[dict, list[str]]]) -> None:
        rows = []
        for row, texts in batch:
            try:
                self._score(row, texts)
            except Exception:
                log.exception("could not score query %s for the query log", row["id"])
            rows.append(row)
        try:
            groups: dict[tuple, list[dict]] = {}
            for row in rows:  # one executemany per set of columns (a scored row has more)
                groups.setdefault(tuple(sorted(row)), []).append(row)
            with self.db.session() as s:
                for group in groups.values():
                    s.execute(insert(QueryRecord), group)
        except Exception:
            log.exception("could not write %d queries to the query log; writing them one by one", len(rows))
            for row in rows:
                try:
                    with self.db.session() as s:
                        s.add(QueryRecord(**row))
                except Exception:
                    log.exception("could not write query %s to the query log", row["id"])
        finally:
            with self._cond:
                for row in rows:
                    self._pending.discard(row["id"])
                self._cond.notify_all()

    def _score(self, row: dict, texts: list[str]) -> None:
        cheap = row["generator"] not in (None, "extractive")  # extractive answers copy context sentences
        if not (self.settings.query_log_faithfulness and cheap and self._scorer_factory):
            return
        if not row["answer"] or row["declined"] or row["generation_error"] or not texts:
            return
        if self._scorer is None:
            self._scorer = self._scorer_factory()
        scored = self._scorer.score_answer(row["answer"], texts)
        row["faithfulness"] = scored["faithfulness"]
        row["unsupported_claims"] = scored["unsupported"]
        row["claims"] = [asdict(c) for c in scored["claims"]]

    def flush(self, timeout: float = 30.0, ids: Iterable[str] | None = None) -> bool:
        """Wait until the queued rows (or just these ids) are written."""
        want = set(ids) if ids is not None else None
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._pending & want) if want is not None else self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        self.flush(timeout=10)
        self._queue.put(None)
        self._thread.join(timeout=10)

    # retention
    def purge(self, now: float | None = None) -> int:
        """Delete queries (and their feedback) older than the retention period; returns how many queries."""
        days = self.settings.query_log_retention_days
        if not days:
            return 0
        cutoff = (time.time() if now is None else now) - days * 86400
        with self.db.session() as s:
            old = select(QueryRecord.id).where(QueryRecord.created_at < cutoff)
            s.execute(delete(Feedback).where(Feedback.query_id.in_(old)))
            n = s.execute(delete(QueryRecord).where(QueryRecord.created_at < cutoff)).rowcount
        if n:
            log.info("query log: purged %d queries older than %g days", n, days)
        return n or 0

    # reads
    def _load(self, s, query_id: str) -> QueryRecord | None:
        return s.get(QueryRecord, query_id)

    def get(self, query_id: str, allowed: Callable[[str], bool] = lambda c: True) -> dict:
        """The full row with its feedback; QueryNotFound when unknown or another collection's."""
        self.flush(timeout=10, ids=[query_id])
        with self.db.session(read_only=True) as s:
            r = self._load(s, query_id)
            if r is None or not allowed(r.collection):
                raise QueryNotFound(query_id)
            out = _row_dict(r)
            fb = s.scalars(select(Feedback).where(Feedback.query_id == query_id).order_by(Feedback.id)).all()
            out["feedback"] = [_feedback_dict(f) for f in fb]
        return out

    @staticmethod
    def _scope(stmt, collections: list[str] | None, collection: str | None):
        if collection:
            stmt = stmt.where(QueryRecord.collection == collection)
        if collections is not None:
            stmt = stmt.where(QueryRecord.collection.in_(collections))
        return stmt

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
        stmt = self._scope(select(QueryRecord), collections, collection)
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
            items = [_row_dict(r, full=False) for r in rows]
            ratings = self._ratings(s, [r["id"] for r in items])
        for it in items:
            it["feedback"] = ratings.get(it["id"], {"up": 0, "down": 0})
        return {"total": total, "items": items}

    @staticmethod
    def _ratings(s, ids: list[str]) -> dict[str, dict]:
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

    # feedback and labels
    def add_feedback(
        self,
        query_id: str,
        rating: int,
        comment: str | None = None,
        correct_doc_id: str | None = None,
        allowed: Callable[[str], bool] = lambda c: True,
    ) -> dict:
        if rating not in (1, -1):
            raise InvalidRequestError("invalid_rating", "rating is 1 (thumbs up) or -1 (thumbs down)", 422)
        self.flush(timeout=10, ids=[query_id])
        comment = redact(comment, self.settings.query_log_redact_emails, self.settings.query_log_redact_numbers)
        with self.db.session() as s:
            r = self._load(s, query_id)
            if r is None or not allowed(r.collection):
                raise QueryNotFound(query_id)
            f = Feedback(
                query_id=query_id, created_at=time.time(), rating=rating, comment=comment, correct_doc_id=correct_doc_id
            )
            s.add(f)
            s.flush()
            return _feedback_dict(f)

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
        stmt = self._scope(select(QueryRecord), collections, collection).where(QueryRecord.labelled_case.is_(None))
        if since is not None:
            stmt = stmt.where(QueryRecord.created_at >= since)
        stmt = stmt.order_by(QueryRecord.created_at.desc()).limit(CANDIDATE_SCAN)
        self.flush(timeout=5)
        with self.db.session(read_only=True) as s:
            rows = [_row_dict(r, full=False) for r in s.scalars(stmt).all()]
            ratings: dict[str, dict] = {}
            for i in range(0, len(rows), 500):
                ratings.update(self._ratings(s, [r["id"] for r in rows[i : i + 500]]))
        best: dict[tuple[str, str], dict] = {}
        for r in rows:
            fb = ratings.get(r["id"], {})
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


def new_query_id(state) -> str | None:
    """The query id for a response of the service (`state`: a ServiceState); None when logging is off."""
    log = getattr(state, "querylog", None)
    return log.new_id() if log is not None else None


def log_query(state, query_id: str | None, result, params, route: str, **options) -> None:
    """Hand one answered query to the service's log (no-op when off or without an id)."""
    log = getattr(state, "querylog", None)
    if log is not None:
        log.record(query_id, result, params, route, options)


__all__ = [
    "log_query",
    "new_query_id",
    "QueryLog",
    "QueryNotFound",
    "build_row",
    "parse_since",
    "redact",
    "score_candidate",
]
