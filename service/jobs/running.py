"""One job running in this process: its progress (written to the database at most every PROGRESS_EVERY_S),
the stop question its runner asks between files and cases (cancel, time limit, an ingest job's chunk budget,
shutdown, a lost replica lock), and the values its row ends with, whatever the runner did."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from core.errors import RagError
from service.db import Database, Job
from service.jobs.context import STOPS, JobContext, Outcome, Runner, Stopped, scrub, storable

log = logging.getLogger("rag.jobs")

PROGRESS_EVERY_S = 0.5  # progress and cancel flags go to/come from the database at most this often


@dataclass
class Live:
    """A job running in this process."""

    cancel: threading.Event = field(default_factory=threading.Event)
    progress: dict = field(default_factory=dict)


class Tracker:
    """The progress callback and the stop question of one running job (`tick` and `stop` of its context)."""

    def __init__(self, db: Database, job_id: str, live: Live, time_limit_s: float, stopping: threading.Event, liveness):
        self.db, self.job_id, self.live = db, job_id, live
        self.time_limit_s, self.stopping, self.liveness = time_limit_s, stopping, liveness
        self.started = time.monotonic()
        self.last = {"progress": 0.0, "cancel": time.monotonic()}
        self.max_chunks: int | None = None  # an ingest job's chunk budget (job_max_chunks)

    def flush(self, force: bool = False) -> None:
        if force or time.monotonic() - self.last["progress"] >= PROGRESS_EVERY_S:
            self.last["progress"] = time.monotonic()
            try:
                with self.db.session() as s:
                    running = update(Job).where(Job.id == self.job_id, Job.status == "running")
                    s.execute(running.values(progress=dict(self.live.progress)))
            except SQLAlchemyError as exc:  # the database is unreachable: progress waits; `stop` decides
                log.warning("job %s: progress not written (%s)", self.job_id, type(exc).__name__)

    def tick(self, what: str, n: int) -> None:
        progress = self.live.progress
        if what.endswith("_total") or what == "total":
            progress[what] = n
        else:
            progress[what] = progress.get(what, 0) + n
        self.flush()

    def stop(self) -> str | None:
        if self.stopping.is_set():
            return "shutdown"
        if self.live.cancel.is_set():
            return "cancelled"
        if time.monotonic() - self.started > self.time_limit_s:
            return "time_limit"
        if self.max_chunks is not None and self.live.progress.get("chunks", 0) >= self.max_chunks:
            return "chunk_limit"
        if time.monotonic() - self.last["cancel"] >= PROGRESS_EVERY_S:
            self.last["cancel"] = time.monotonic()
            if not self.liveness.ok():
                return "lost_lock"
            try:
                with self.db.session(read_only=True) as s:
                    asked = s.scalar(select(Job.cancel).where(Job.id == self.job_id))
            except SQLAlchemyError:  # unreachable since `ok` above: asked again at the next check
                return None
            if asked:
                self.live.cancel.set()
                return "cancelled"
        return None


def context_of(job: Job, folder: Path, tracker: Tracker) -> JobContext:
    return JobContext(
        job.id, job.kind, job.collection, list(job.files or []), dict(job.request or {}),
        folder, tracker.tick, tracker.stop,
    )  # fmt: skip


def execute(runner: Runner, ctx: JobContext, roots: list[Path], progress: dict) -> dict:
    """Run the job and return the values its row ends with: a job must end with a state, whatever went wrong."""
    error = None
    try:
        outcome = runner(ctx)
    except Stopped as exc:
        outcome = Outcome(None, "failed", exc.reason)
    except RagError as exc:
        outcome, error = Outcome(None, "failed"), f"{exc.code}: {exc}"
    except Exception as exc:
        log.exception("job %s failed", ctx.id)
        outcome, error = Outcome(None, "failed"), f"{type(exc).__name__}: {exc}"
    status, reason = outcome.status, None
    if outcome.stopped:
        reason = outcome.stopped if outcome.stopped in STOPS else "cancelled"
        status, error = STOPS[reason]
    return dict(
        status=status,
        reason=reason,
        error=scrub(error, roots),
        report=storable(outcome.report),
        progress=dict(progress),
        finished_at=time.time(),
    )
