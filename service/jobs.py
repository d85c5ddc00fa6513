"""One job system for ingest jobs and audits, persisted in the service database (service/db).

- **Queue**: a job is a row. Idle workers (one per kind per process) claim the next one with
  `SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite's writes are serial) and a compare-and-set to
  `running`. Claims are fair: the owner (API key) served least recently goes first, FIFO within an owner.
  Two ingest jobs never run at once in one collection (their uploads share the collection's work folder).
- **Liveness**: each process (replica) holds a lock for as long as it lives: a session-level advisory lock
  on PostgreSQL, an flock'ed file next to a SQLite database. A running job names its replica; it is marked
  `interrupted` only when that replica's lock can be taken, i.e. the process is gone. Checked at start-up
  and whenever a worker is idle, so a live replica's job is never touched.
- **Stops**: the ingest pipeline (and the audit's progress callback) asks `stop()` between files and
  writes: a cancel (`cancelled`), the time limit or shutdown (`interrupted`, with the reason).
- **Truth**: an ingest job ends with the report's status: succeeded, partial (some files failed) or failed.
- **Bounds**: finished jobs are kept `job_keep_last` per kind and `job_keep_days`; queued jobs per owner
  `job_max_queued_per_key`; an owner's uploads held at once `max_upload_key_mb`.
- **Uploads** wait in `uploads/.staging/<job id>/<name>` (a folder per request: concurrent uploads never
  share a file), move to `uploads/<collection>/<name>` when the job starts (so a document's source is the
  same from one upload to the next, and re-uploading is idempotent), and are deleted when it ends.
- Nothing a client sees names a server path: `files` are upload names, reports and errors are scrubbed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock, Timeout
from sqlalchemy import delete, exists, func, select, text, update
from sqlalchemy.orm import aliased

from core.errors import InvalidRequestError, RagError
from core.settings import Settings
from service.db import Database, Job
from service.db.engine import lock_key

log = logging.getLogger("rag.jobs")

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "partial", "failed", "cancelled", "interrupted")
# Why a job stopped early -> its status, and what to tell the caller.
STOPS = {
    "cancelled": ("cancelled", "cancelled by the caller"),
    "time_limit": ("interrupted", "stopped at the job time limit; submit the files again to finish"),
    "shutdown": ("interrupted", "the service shut down while this job ran; submit the files again to finish"),
    "lost_lock": ("interrupted", "this replica lost its database connection; submit the files again to finish"),
    "replica_gone": ("interrupted", "the service stopped while this job ran; submit the files again to finish"),
}
PROGRESS_EVERY_S = 0.5  # progress and cancel flags go to/come from the database at most this often


def owner_of(api_key: str | None) -> str:
    """Who a job belongs to: a hash of the API key (never the key), or "open" when the API is open."""
    import hashlib

    return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else "open"


_ABS_PATH = re.compile(r"(?<![\w.:/~-])(?:/[^\s/'\"<>:;,()]+){2,}/?")


def scrub(message: str | None, roots: list[Path] = ()) -> str | None:
    """`message` without server file-system paths: below a known root, the path relative to it; any other
    absolute path, its last part."""
    if message is None:
        return None
    for root in sorted((str(r).rstrip("/") for r in roots), key=len, reverse=True):
        message = message.replace(root + "/", "")
    return _ABS_PATH.sub(lambda m: Path(m.group().rstrip("/")).name, message)


def _storable(report: dict | None) -> dict | None:
    """The report as JSON any database takes: NaN and infinities (PostgreSQL's JSONB refuses them) become null."""
    if report is None:
        return None
    return json.loads(json.dumps(report, default=str), parse_constant=lambda _: None)


class Stopped(Exception):
    """Raised from a progress callback to stop a job that has no stop hook of its own (an audit)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Outcome:
    report: dict | None
    status: str  # succeeded | partial | failed
    stopped: str | None = None  # a key of STOPS


@dataclass
class JobContext:
    """What a runner gets: the job, its uploads folder, a progress callback and the stop question."""

    id: str
    kind: str
    collection: str
    files: list[str]
    request: dict
    folder: Path
    tick: Callable[[str, int], None]
    stop: Callable[[], str | None]

    def check_stop(self) -> None:
        """Raise Stopped when the job is asked to stop (cancel, limit, shutdown)."""
        if (reason := self.stop()) is not None:
            raise Stopped(reason)

    def count_cases(self, n: int) -> None:
        """Progress of an audit or experiment (n more cases done), then stop if asked."""
        self.tick("cases", n)
        self.check_stop()


Runner = Callable[[JobContext], Outcome]


class JobNotFound(InvalidRequestError):
    def __init__(self, job_id: str):
        super().__init__("job_not_found", f"no job {job_id[:64]!r}", 404)


class TooManyJobs(InvalidRequestError):
    def __init__(self, limit: int):
        super().__init__("too_many_jobs", f"this API key has {limit} jobs queued; wait for some to finish", 429)


class _PgLiveness:
    """A session-level advisory lock per replica, held on a connection of its own for the process's life.
    PostgreSQL releases it when the session ends, however the process ended."""

    def __init__(self, db: Database):
        self.db = db
        self._conn = None
        self._guard = threading.Lock()

    def hold(self, replica: str) -> None:
        self.replica = replica
        conn = self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_key("replica", replica)})
        self._conn = conn

    def ok(self) -> bool:
        """Our lock is still held (the session is alive); re-taken on a fresh session if it was lost."""
        with self._guard:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except Exception:
                log.error("the replica's database session was lost; its running jobs stop")
                try:
                    self._conn.invalidate()
                    self._conn.close()
                    self.hold(self.replica)
                except Exception:
                    pass
                return False

    def gone(self, session, replica: str) -> bool:
        return self.db.try_xact_lock(session, "replica", replica)

    def release(self) -> None:
        with self._guard:
            if self._conn is not None:
                try:
                    self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key("replica", self.replica)})
                    self._conn.close()
                except Exception:
                    pass
                self._conn = None


class _FileLiveness:
    """An flock'ed file per replica beside the SQLite database; the OS releases it even on SIGKILL."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, replica: str) -> Path:
        return self.folder / (re.sub(r"[^\w.-]", "_", replica) + ".lock")

    def hold(self, replica: str) -> None:
        self.lock = FileLock(self._path(replica))
        self.lock.acquire(timeout=0)

    def ok(self) -> bool:
        return True

    def gone(self, session, replica: str) -> bool:
        path = self._path(replica)
        probe = FileLock(path)
        try:
            probe.acquire(timeout=0)
        except Timeout:
            return False
        probe.release()
        path.unlink(missing_ok=True)
        return True

    def release(self) -> None:
        self.lock.release()
        Path(self.lock.lock_file).unlink(missing_ok=True)


@dataclass
class _Live:
    """A job running in this process."""

    cancel: threading.Event = field(default_factory=threading.Event)
    progress: dict = field(default_factory=dict)


class JobManager:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        runners: dict[str, Runner],
        *,
        replica: str | None = None,
        start: bool = True,
    ):
        self.db, self.settings, self.runners = db, settings, runners
        self.replica = replica or f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.uploads = Path(settings.uploads_dir or Path(settings.data_dir) / "uploads")
        self.staging = self.uploads / ".staging"
        self.staging.mkdir(parents=True, exist_ok=True)
        self.roots = [self.staging, self.uploads, Path(settings.data_dir).absolute()]
        self.roots += [Path(r).resolve() for r in self.roots]
        if db.is_postgres:
            self.liveness: Any = _PgLiveness(db)
        else:
            self.liveness = _FileLiveness(Path(db.url.database or settings.data_dir).parent / "replicas")
        self.liveness.hold(self.replica)
        self._stopping = threading.Event()
        self._wake = {kind: threading.Event() for kind in runners}
        self._live: dict[str, _Live] = {}
        self._lock = threading.Lock()
        self._inflight: dict[str, int] = {}  # owner -> upload bytes being received here now
        self.sweep()
        self.prune()
        self.remove_stale_staging()
        self._threads = [
            threading.Thread(target=self._worker, args=(kind,), name=f"jobs-{kind}", daemon=True) for kind in runners
        ]
        if start:
            self.start()

    def start(self) -> None:
        for t in self._threads:
            if not t.is_alive():
                t.start()

    # --- submitting -----------------------------------------------------------------------------------------

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def staging_dir(self, job_id: str) -> Path:
        return self.staging / job_id

    def check_queue(self, owner: str) -> None:
        """Raise TooManyJobs when `owner` has its fill of queued jobs."""
        with self.db.session(read_only=True) as s:
            n = s.scalar(select(func.count()).where(Job.owner == owner, Job.status == "queued"))
        if n >= self.settings.job_max_queued_per_key:
            raise TooManyJobs(self.settings.job_max_queued_per_key)

    def upload_budget(self, owner: str) -> int:
        """Bytes `owner` may still upload: the per-key limit less its waiting and running uploads."""
        with self.db.session(read_only=True) as s:
            held = s.scalar(
                select(func.coalesce(func.sum(Job.upload_bytes), 0)).where(Job.owner == owner, Job.status.in_(ACTIVE))
            )
        with self._lock:
            held += self._inflight.get(owner, 0)
        return int(self.settings.max_upload_key_mb * 1e6) - int(held)

    def receiving(self, owner: str, n: int) -> None:
        """Count `n` more (or, negative, fewer) bytes being received for `owner` in this process."""
        with self._lock:
            self._inflight[owner] = self._inflight.get(owner, 0) + n
            if self._inflight[owner] <= 0:
                del self._inflight[owner]

    def submit(
        self,
        kind: str,
        collection: str,
        owner: str,
        *,
        job_id: str | None = None,
        files: list[str] = (),
        upload_bytes: int = 0,
        request: dict | None = None,
        progress: dict | None = None,
    ) -> dict:
        job = Job(
            id=job_id or self.new_id(),
            kind=kind,
            owner=owner,
            collection=collection,
            status="queued",
            created_at=time.time(),
            files=list(files),
            upload_bytes=upload_bytes,
            progress=progress or {},
            request=request,
        )
        with self.db.session() as s:
            self.db.xact_lock(s, "owner", owner)  # the count and the insert as one step
            n = s.scalar(select(func.count()).where(Job.owner == owner, Job.status == "queued"))
            if n >= self.settings.job_max_queued_per_key:
                raise TooManyJobs(self.settings.job_max_queued_per_key)
            s.add(job)
            out = self._public(job)
        self._wake[kind].set()
        return out

    # --- reading and cancelling ------------------------------------------------------------------------------

    def get(self, job_id: str, kind: str | None = None) -> dict | None:
        if not re.fullmatch(r"[0-9a-f]{1,32}", job_id):
            return None
        with self.db.session(read_only=True) as s:
            job = s.get(Job, job_id)
            if job is None or (kind is not None and job.kind != kind):
                return None
            out = self._public(job)
        live = self._live.get(job_id)
        if live is not None and out["status"] == "running":
            out["progress"] = dict(live.progress)  # fresher than the last write
        return out

    def owner(self, job_id: str) -> str | None:
        with self.db.session(read_only=True) as s:
            return s.scalar(select(Job.owner).where(Job.id == job_id))

    def cancel(self, job_id: str) -> dict:
        """Cancel a queued job now, or ask a running one to stop (it ends `cancelled` within moments)."""
        with self.db.session() as s:
            job = s.get(Job, job_id, with_for_update=True)
            if job is None:
                raise JobNotFound(job_id)
            if job.status == "queued":
                job.status, job.reason, job.finished_at = "cancelled", "cancelled", time.time()
                job.error = "cancelled by the caller before it started"
            elif job.status == "running":
                job.cancel = "cancelled"
            else:
                raise InvalidRequestError("job_finished", f"job {job_id} has already ended ({job.status})", 409)
            status = job.status
        if status == "cancelled":
            self._remove_uploads(job_id)
        live = self._live.get(job_id)
        if live is not None:
            live.cancel.set()
        return self.get(job_id)

    # --- the workers -----------------------------------------------------------------------------------------

    def _worker(self, kind: str) -> None:
        while not self._stopping.is_set():
            try:
                job = self._claim(kind)
                if job is None:
                    self.sweep()
                    self._wake[kind].wait(self.settings.job_poll_s)
                    self._wake[kind].clear()
                    continue
                self._run(job)
            except Exception:  # the database is down, say: keep the worker alive and try again
                log.exception("job worker %s", kind)
                self._stopping.wait(max(self.settings.job_poll_s, 1.0))

    def _claim(self, kind: str) -> Job | None:
        """The next job of `kind`, marked running by this replica; fair across owners."""
        with self.db.session() as s:
            lanes = s.execute(
                select(Job.owner, func.min(Job.created_at))
                .where(Job.kind == kind, Job.status == "queued")
                .group_by(Job.owner)
            ).all()
            if not lanes:
                return None
            owners = [o for o, _ in lanes]
            served = dict(
                s.execute(
                    select(Job.owner, func.max(Job.started_at))
                    .where(Job.kind == kind, Job.owner.in_(owners), Job.started_at.is_not(None))
                    .group_by(Job.owner)
                ).all()
            )
            lanes.sort(key=lambda lane: (served.get(lane[0]) or 0.0, lane[1]))  # least recently served first
            other = aliased(Job)
            busy = exists().where(other.kind == "ingest", other.status == "running", other.collection == Job.collection)
            for owner, _ in lanes:
                q = select(Job).where(Job.kind == kind, Job.status == "queued", Job.owner == owner)
                if kind == "ingest":
                    q = q.where(~busy)
                job = s.scalars(q.order_by(Job.created_at).limit(1).with_for_update(skip_locked=True)).first()
                if job is None:
                    continue
                cas = update(Job).where(Job.id == job.id, Job.status == "queued")
                if kind == "ingest":
                    # One ingest job per collection at a time, even when two replicas claim at once.
                    self.db.xact_lock(s, "collection", job.collection)
                    cas = cas.where(~busy)
                now = time.time()
                done = s.execute(
                    cas.values(status="running", replica=self.replica, started_at=now),
                    execution_options={"synchronize_session": False},
                )
                if done.rowcount == 1:
                    s.refresh(job)
                    return job
        return None

    def _run(self, job: Job) -> None:
        live = _Live(progress=dict(job.progress or {}))
        self._live[job.id] = live
        started = time.monotonic()
        last = {"progress": 0.0, "cancel": time.monotonic()}

        def flush(force: bool = False) -> None:
            if force or time.monotonic() - last["progress"] >= PROGRESS_EVERY_S:
                last["progress"] = time.monotonic()
                with self.db.session() as s:
                    running = update(Job).where(Job.id == job.id, Job.status == "running")
                    s.execute(running.values(progress=dict(live.progress)))

        def tick(what: str, n: int) -> None:
            if what.endswith("_total") or what == "total":
                live.progress[what] = n
            else:
                live.progress[what] = live.progress.get(what, 0) + n
            flush()

        def stop() -> str | None:
            if self._stopping.is_set():
                return "shutdown"
            if live.cancel.is_set():
                return "cancelled"
            if time.monotonic() - started > self.settings.job_time_limit_s:
                return "time_limit"
            if time.monotonic() - last["cancel"] >= PROGRESS_EVERY_S:
                last["cancel"] = time.monotonic()
                if not self.liveness.ok():
                    return "lost_lock"
                with self.db.session(read_only=True) as s:
                    asked = s.scalar(select(Job.cancel).where(Job.id == job.id))
                if asked:
                    live.cancel.set()
                    return "cancelled"
            return None

        ctx = JobContext(
            job.id, job.kind, job.collection, list(job.files or []), dict(job.request or {}),
            self.staging_dir(job.id), tick, stop,
        )  # fmt: skip
        error = None
        try:
            outcome = self.runners[job.kind](ctx)
        except Stopped as exc:
            outcome = Outcome(None, "failed", exc.reason)
        except RagError as exc:
            outcome, error = Outcome(None, "failed"), f"{exc.code}: {exc}"
        except Exception as exc:  # a job must end with a state, whatever went wrong
            log.exception("job %s failed", job.id)
            outcome, error = Outcome(None, "failed"), f"{type(exc).__name__}: {exc}"
        status, reason = outcome.status, None
        if outcome.stopped:
            reason = outcome.stopped if outcome.stopped in STOPS else "cancelled"
            status, error = STOPS[reason]
        values = dict(
            status=status,
            reason=reason,
            error=scrub(error, self.roots),
            report=_storable(outcome.report),
            progress=dict(live.progress),
            finished_at=time.time(),
        )
        try:
            with self.db.session() as s:
                # Only if it is still ours: a replica that lost its lock may have seen the job marked interrupted.
                s.execute(update(Job).where(Job.id == job.id, Job.replica == self.replica, Job.status == "running")
                          .values(**values))  # fmt: skip
        finally:
            self._live.pop(job.id, None)
            self._remove_uploads(job.id)
        self.prune()

    # --- recovery, retention, uploads -------------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Mark `interrupted` the running jobs of replicas that are gone; return their ids."""
        ids: list[str] = []
        with self.db.session() as s:
            replicas = s.scalars(
                select(Job.replica).distinct().where(Job.status == "running", Job.replica != self.replica)
            ).all()
            for replica in replicas:
                if replica is None or not self.liveness.gone(s, replica):
                    continue
                rows = s.execute(
                    select(Job.id, Job.kind, Job.collection).where(Job.replica == replica, Job.status == "running")
                ).all()
                gone = [r.id for r in rows]
                for r in rows:  # while still `running` to others, so no job of the collection starts meanwhile
                    if r.kind == "ingest":
                        shutil.rmtree(self.uploads / r.collection, ignore_errors=True)
                status, message = STOPS["replica_gone"]
                s.execute(
                    update(Job)
                    .where(Job.id.in_(gone), Job.status == "running")
                    .values(status=status, reason="replica_gone", error=message, finished_at=time.time())
                )
                log.warning("replica %s is gone: %d running job(s) marked interrupted", replica, len(gone))
                ids += gone
        for job_id in ids:
            self._remove_uploads(job_id)
        return ids

    def prune(self) -> int:
        """Drop finished jobs past the retention age or count (per kind); return how many went."""
        cutoff = time.time() - self.settings.job_keep_days * 86400
        n = 0
        with self.db.session() as s:
            n += s.execute(delete(Job).where(Job.status.in_(FINISHED), Job.finished_at < cutoff)).rowcount
            for kind in sorted({"ingest", "audit", *self.runners}):
                old = s.scalars(
                    select(Job.id)
                    .where(Job.kind == kind, Job.status.in_(FINISHED))
                    .order_by(Job.finished_at.desc(), Job.id)
                    .offset(self.settings.job_keep_last)
                ).all()
                if old:
                    n += s.execute(delete(Job).where(Job.id.in_(old))).rowcount
        return n

    def remove_stale_staging(self, older_than_s: float = 3600) -> None:
        """Staging folders no queued or running job owns (a process died mid-upload), once they are old."""
        with self.db.session(read_only=True) as s:
            active = set(s.scalars(select(Job.id).where(Job.status.in_(ACTIVE))).all())
        for folder in self.staging.iterdir() if self.staging.exists() else []:
            try:
                if folder.name not in active and time.time() - folder.stat().st_mtime > older_than_s:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass

    def _remove_uploads(self, job_id: str) -> None:
        shutil.rmtree(self.staging_dir(job_id), ignore_errors=True)

    def _public(self, job: Job) -> dict:
        return {
            "id": job.id,
            "kind": job.kind,
            "collection": job.collection,
            "status": job.status,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "files": list(job.files or []),
            "progress": dict(job.progress or {}),
            "report": job.report,
            "reason": job.reason,
            "error": job.error,
            "cancel_requested": bool(job.cancel) and job.status == "running",
        }

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop promptly: running jobs are asked to stop (they end `interrupted`, reason `shutdown`)."""
        self._stopping.set()
        for event in self._wake.values():
            event.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            log.warning("a job did not stop within %.0f s; it is marked interrupted", timeout_s)
            status, message = STOPS["shutdown"]
            with self.db.session() as s:
                s.execute(
                    update(Job)
                    .where(Job.replica == self.replica, Job.status == "running")
                    .values(status=status, reason="shutdown", error=message, finished_at=time.time())
                )
        self.liveness.release()


def ingest_runner(settings: Settings, store, embedder, bm25, uploads: Path) -> Runner:
    """Run an ingest job: move its uploads into the collection's work folder (one ingest job per collection
    runs at a time), ingest them, delete them. Document ids are the upload names (`2023/summary.txt`)."""
    from ingest.pipeline import Ingestor

    def run(ctx: JobContext) -> Outcome:
        work = uploads / ctx.collection
        shutil.rmtree(work, ignore_errors=True)  # what a crashed job left
        work.mkdir(parents=True)
        try:
            for name in ctx.files:
                dest = work / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(ctx.folder / name, dest)
                except FileNotFoundError:
                    raise InvalidRequestError(
                        "upload_missing", f"the upload {name!r} is not on this replica (is uploads_dir shared?)"
                    ) from None
            # A top-level file's document id is its name; a folder's files get "<folder>/<relative path>".
            tops = sorted({name.split("/", 1)[0] for name in ctx.files})
            report = Ingestor(settings, store, embedder, bm25).run(
                [work / t for t in tops], ctx.collection, progress=ctx.tick, stop=ctx.stop
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        out = report.to_dict()
        roots = [work, work.resolve(), uploads, uploads.resolve(), Path(settings.data_dir).absolute()]
        for f in out["files"]:
            f["path"] = scrub(f["path"], roots)
            f["reason"] = scrub(f["reason"], roots)
        return Outcome(out, report.status, report.stopped)

    return run
