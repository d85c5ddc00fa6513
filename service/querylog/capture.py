"""Capture: a response's query id (`new_query_id`), the row of one answered query (`build_row`, redacted as
the settings say) and `QueryWriter`, which queues rows and writes them in batches on one background thread
(scoring an LLM answer's faithfulness first, purging old rows hourly), so a request never waits on the
database. `log_query` hands a service's answered query to it."""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import threading
import time
import uuid
from dataclasses import asdict
from typing import Callable, Iterable

from sqlalchemy import insert
from sqlalchemy.exc import InterfaceError, OperationalError

from core.settings import Settings
from service.db import Database
from service.db.querylog import QueryRecord
from service.querylog import retention

log = logging.getLogger("rag.querylog")

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
# Digits joined by at most one separator each: "+44 20 7946 0958", "4111-1111-1111-1111", "12345".
NUMBER = re.compile(r"\+?\(?\d(?:[ ().\-/]{0,2}\d)+")
MIN_REDACTED_DIGITS = 5
WRITE_WAIT_S, WRITE_BATCH = 0.2, 200  # the query-log writer batches rows
# Rows whose write met an unreachable database are held (in memory, oldest dropped past HOLD_MAX) and tried
# again every RETRY_S: a database restart loses no logged query (tests/service/test_fault_postgres.py).
RETRY_S, HOLD_MAX = 1.0, 20_000
TOP_N = 10  # documents per stage kept in stage_tops, and compared for retriever agreement


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


def _top_docs(hits: list[tuple[str, str, float]], n: int = TOP_N) -> list[list]:
    out, seen = [], set()
    for _, doc_id, score in hits:
        if doc_id not in seen:
            seen.add(doc_id)
            out.append([doc_id, round(float(score), 4)])
            if len(out) == n:
                break
    return out


def text_hash(text: str) -> str:
    """A short hash of a context's text: the log keeps it instead of the text, which is read back from the store
    (the same chunk id) when a query is shown, and marked `changed` when the store's text differs."""
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]


def logged_context(c) -> dict:
    """A context as the log keeps it: where it lies and how each stage ranked it, not its text (the text was
    ~70% of a row: 5 chunks of a few hundred to a few thousand characters each, all of them in the store)."""
    out = asdict(c)
    out["text_hash"] = text_hash(out.pop("text") or "")
    out["score"] = round(float(out["score"]), 4)
    out["stages"] = {k: {"rank": v["rank"], "score": round(float(v["score"]), 4)} for k, v in out["stages"].items()}
    if out.get("source") == out.get("doc_id"):
        del out["source"]  # the common case: read back as the doc id
    return out


def storable_text(value):
    """`value` (a row, or any JSON value) as every database keeps it: strings without NUL (PostgreSQL refuses
    it in text and JSONB) and with lone surrogates as U+FFFD, so the row is written rather than lost."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, dict):
        return {storable_text(k): storable_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable_text(v) for v in value]
    return value


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
        "contexts": [logged_context(c) for c in result.retrieval.contexts],
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


class QueryWriter:
    """The writing half of the query log: `record` queues a row, one background thread writes them."""

    def __init__(self, settings: Settings, db: Database, scorer_factory: Callable[[], object] | None = None):
        """`scorer_factory` builds a diagnostics FaithfulnessScorer when an LLM answer is first scored."""
        self.settings, self.db = settings, db
        self.enabled = settings.query_log
        self._scorer_factory, self._scorer = scorer_factory, None
        self._queue: queue.Queue = queue.Queue()
        self._pending: set[str] = set()
        self._cond = threading.Condition()
        self._last_purge = 0.0
        self._held: list[dict] = []  # rows the database was unreachable for (the writer thread's own)
        self._dropped = 0
        self._next_retry = 0.0
        self._thread = threading.Thread(target=self._run, name="querylog", daemon=True)
        self._thread.start()

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

    def purge(self, now: float | None = None) -> int:
        """Delete queries (and their feedback) older than the retention period; returns how many queries."""
        return retention.purge(self.db, self.settings.query_log_retention_days, now)

    def _run(self) -> None:
        while True:
            if time.time() - self._last_purge > retention.PURGE_EVERY_S:
                self._last_purge = time.time()
                try:
                    self.purge()
                except Exception:
                    log.exception("query-log purge failed")
            if self._held and time.monotonic() >= self._next_retry:
                self._next_retry = time.monotonic() + RETRY_S
                self._retry_held()
            try:
                item = self._queue.get(timeout=RETRY_S if self._held else 60)
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
            rows.append(storable_text(row))
        if self._held:  # the database was away: these wait behind the held rows, in order
            self._hold(rows)
            return
        try:
            self._insert(rows)
        except (OperationalError, InterfaceError) as exc:
            if _unreachable(exc):
                self._hold(rows, exc)
                return
            self._one_by_one(rows)
        except Exception:
            log.exception("could not write %d queries to the query log; writing them one by one", len(rows))
            self._one_by_one(rows)
        self._done(row["id"] for row in rows)

    def _insert(self, rows: list[dict]) -> None:
        groups: dict[tuple, list[dict]] = {}
        for row in rows:  # one executemany per set of columns (a scored row has more)
            groups.setdefault(tuple(sorted(row)), []).append(row)
        with self.db.session() as s:
            for group in groups.values():
                s.execute(insert(QueryRecord), group)

    def _one_by_one(self, rows: list[dict]) -> None:
        for row in rows:
            try:
                with self.db.session() as s:
                    s.add(QueryRecord(**row))
            except Exception:
                log.exception("could not write query %s to the query log", row["id"])

    def _hold(self, rows: list[dict], exc: BaseException | None = None) -> None:
        if exc is not None and not self._held:
            log.warning("query log: the database is unreachable (%s); holding rows to write when it is back", exc)
        self._held.extend(rows)
        if len(self._held) > HOLD_MAX:
            gone, self._held = self._held[: len(self._held) - HOLD_MAX], self._held[-HOLD_MAX:]
            self._dropped += len(gone)
            log.error(
                "query log: %d rows dropped while the database was unreachable (over %d held)", len(gone), HOLD_MAX
            )
            self._done(row["id"] for row in gone)

    def _retry_held(self) -> None:
        held = self._held
        try:
            self._insert(held)
        except (OperationalError, InterfaceError) as exc:
            if not _unreachable(exc):  # reachable, but some row is refused: each on its own
                self._held = []
                self._one_by_one(held)
                self._done(row["id"] for row in held)
            return
        except Exception:
            self._held = []
            self._one_by_one(held)
            self._done(row["id"] for row in held)
            return
        self._held = []
        log.warning("query log: the database is back; %d held rows written", len(held))
        self._done(row["id"] for row in held)

    def _done(self, ids: Iterable[str]) -> None:
        with self._cond:
            for i in ids:
                self._pending.discard(i)
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


def _unreachable(exc: BaseException) -> bool:
    """Whether a database error means the database could not be reached (the connection refused, reset or
    closed; SQLite locked), rather than a row it refused."""
    if isinstance(exc, InterfaceError) or getattr(exc, "connection_invalidated", False):
        return True
    if isinstance(exc, OperationalError):
        orig = getattr(exc, "orig", None)
        state = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None), "sqlstate", None)
        # PostgreSQL's class 08 (connection exception), 57P0x (admin/crash shutdown) and no SQLSTATE at all (the
        # driver never reached a server); SQLite's OperationalError ("database is locked", "unable to open").
        return state is None or str(state).startswith(("08", "57P"))
    return False


def new_query_id(state) -> str | None:
    """The query id for a response of the service (`state`: a ServiceState); None when logging is off."""
    log = getattr(state, "querylog", None)
    return log.new_id() if log is not None else None


def log_query(state, query_id: str | None, result, params, route: str, **options) -> None:
    """Hand one answered query to the service's log (no-op when off or without an id)."""
    log = getattr(state, "querylog", None)
    if log is not None:
        log.record(query_id, result, params, route, options)
