"""JobManager: the job queue of one process (replica). Submits jobs (bounded per owner), reads and cancels
them, runs `job_workers` workers that each claim the next job of any kind (service/jobs/claims.py: a key with
no job running goes first, and the last free worker is kept for such a key) and run it
(service/jobs/running.py), and at start-up and when idle sweeps the jobs of gone replicas and prunes old ones
(service/jobs/recovery.py)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select, update

from core.errors import InvalidRequestError
from core.settings import Settings
from service.db import Database, Job
from service.jobs import recovery
from service.jobs.claims import claim
from service.jobs.context import ACTIVE, STOPS, JobNotFound, Runner, TooManyJobs
from service.jobs.liveness import liveness_for
from service.jobs.running import Live, Tracker, context_of, execute

log = logging.getLogger("rag.jobs")


class JobManager:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        runners: dict[str, Runner],
        *,
        replica: str | None = None,
        start: bool = True,
        store_lock=None,
    ):
        self.db, self.settings, self.runners = db, settings, runners
        self.replica = replica or f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.uploads = Path(settings.uploads_dir or Path(settings.data_dir) / "uploads")
        self.staging = self.uploads / ".staging"
        self.staging.mkdir(parents=True, exist_ok=True)
        self.roots = [self.staging, self.uploads, Path(settings.data_dir).absolute()]
        self.roots += [Path(r).resolve() for r in self.roots]
        self.liveness = liveness_for(db, settings)
        self.liveness.hold(self.replica)
        self.store_lock = store_lock  # service/jobs/replicas.py: released at shutdown
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._live: dict[str, Live] = {}
        self._lock = threading.Lock()
        self._claiming = threading.Lock()  # this process's workers claim one at a time (the free count is exact)
        self._busy = 0
        self._swept = 0.0
        self._inflight: dict[str, int] = {}  # owner -> upload bytes being received here now
        self.workers = settings.job_workers or default_workers()
        self.sweep()
        self.prune()
        self.remove_stale_staging()
        self._threads = [
            threading.Thread(target=self._worker, name=f"jobs-{i}", daemon=True) for i in range(self.workers)
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
            out = public(job)
        self._wake.set()
        return out

    # --- reading and cancelling ------------------------------------------------------------------------------

    def get(self, job_id: str, kind: str | None = None) -> dict | None:
        if not re.fullmatch(r"[0-9a-f]{1,32}", job_id):
            return None
        with self.db.session(read_only=True) as s:
            job = s.get(Job, job_id)
            if job is None or (kind is not None and job.kind != kind):
                return None
            out = public(job)
        live = self._live.get(job_id)
        if live is not None and out["status"] == "running":
            out["progress"] = dict(live.progress)  # fresher than the last write
        return out

    def list(
        self, kind: str, collections: list[str] | None, limit: int = 50, before: float | None = None
    ) -> list[dict]:
        """Jobs of one kind, newest first, in these collections (None = all), created before `before` (paging).
        Each as `public` shows it, with the report's bulky parts left out (see `summary_of`)."""
        q = select(Job).where(Job.kind == kind)
        if collections is not None:
            q = q.where(Job.collection.in_(collections))
        if before is not None:
            q = q.where(Job.created_at < before)
        with self.db.session(read_only=True) as s:
            jobs = s.scalars(q.order_by(Job.created_at.desc()).limit(limit)).all()
            return [summary_of(j) for j in jobs]

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

    def _claim(self) -> Job | None:
        """The next job for a free worker of this process. The last free worker (of several) takes only a job
        of a key with none running, so one key's long jobs never hold every worker."""
        with self._claiming:
            if not self.liveness.ok():  # the database connection was lost: the lock is taken again first
                return None
            last = self.workers > 1 and self.workers - self._busy == 1
            job = claim(self.db, list(self.runners), self.replica, only_idle_owners=last)
            if job is not None:
                with self._lock:
                    self._busy += 1
            return job

    def _worker(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self._claim()
                if job is None:
                    if time.monotonic() - self._swept >= self.settings.job_poll_s:
                        self._swept = time.monotonic()
                        if self.sweep():
                            continue  # jobs of a gone replica may be queued again
                    self._wake.wait(self.settings.job_poll_s)
                    self._wake.clear()
                    continue
                try:
                    self._run(job)
                finally:
                    with self._lock:
                        self._busy -= 1
                    self._wake.set()  # a worker kept for idle keys may take any job now
            except Exception:  # the database is down, say: keep the worker alive and try again
                log.exception("job worker")
                self._stopping.wait(max(self.settings.job_poll_s, 1.0))

    def _run(self, job: Job) -> None:
        live = Live(progress=dict(job.progress or {}))
        self._live[job.id] = live
        tracker = Tracker(self.db, job.id, live, self.settings.job_time_limit_s, self._stopping, self.liveness)
        if job.kind == "ingest":
            tracker.max_chunks = self.settings.job_max_chunks
        ctx = context_of(job, self.staging_dir(job.id), tracker)
        values = execute(self.runners[job.kind], ctx, self.roots, live.progress)
        again = values["reason"] == "lost_lock" and recovery.attempts(job.progress) + 1 < self.settings.job_max_attempts
        if again:  # the database went away mid-job: queued again, as a gone replica's job is (recovery.sweep)
            kept = {k: v for k, v in live.progress.items() if k == "total" or k.endswith("_total")}
            values = dict(
                status="queued", replica=None, progress={**kept, "attempts": recovery.attempts(job.progress) + 1}
            )
        try:
            self._record_end(job.id, values)
        finally:
            self._live.pop(job.id, None)
            if not again:
                self._remove_uploads(job.id)
        self.prune()

    def _record_end(self, job_id: str, values: dict) -> None:
        """Write a job's end, retried while the database is unreachable (a job left `running` by a failed write
        would stay so for as long as this replica lives: its lock is held, so no sweep takes it)."""
        while True:
            try:
                with self.db.session() as s:
                    # Only if it is still ours: a replica that lost its lock may have seen it marked interrupted.
                    s.execute(update(Job).where(Job.id == job_id, Job.replica == self.replica, Job.status == "running")
                              .values(**values))  # fmt: skip
                return
            except Exception as exc:
                log.warning("job %s: its end (%s) not written yet: %s", job_id, values["status"], type(exc).__name__)
                if self._stopping.wait(1.0):
                    raise

    # --- recovery, retention, uploads -------------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Queue again (or, after `job_max_attempts` runs, mark `interrupted`) the running jobs of replicas
        that are gone; return their ids."""
        ids, requeued = recovery.sweep(
            self.db, self.liveness, self.replica, self.uploads, self.settings.job_max_attempts
        )
        for job_id in ids:
            if job_id not in requeued:
                self._remove_uploads(job_id)
        if requeued:
            self._wake.set()
        return ids

    def prune(self) -> int:
        """Drop finished jobs past the retention age or count (per kind); return how many went."""
        return recovery.prune(self.db, self.settings, self.runners)

    def remove_stale_staging(self, older_than_s: float = 3600) -> None:
        """Staging folders no queued or running job owns (a process died mid-upload), once they are old."""
        recovery.remove_stale_staging(self.db, self.staging, older_than_s)

    def _remove_uploads(self, job_id: str) -> None:
        shutil.rmtree(self.staging_dir(job_id), ignore_errors=True)

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop promptly: running jobs are asked to stop (they end `interrupted`, reason `shutdown`)."""
        self._stopping.set()
        self._wake.set()
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
        if self.store_lock is not None:
            self.store_lock.release()


def default_workers() -> int:
    """Cores + 1, at most 8: the workers mostly wait on the embedders' model threads (which batch their
    callers), and one more than the cores leaves a worker for keys with no job running."""
    return min(8, (os.cpu_count() or 1) + 1)


def collections_of(job: Job) -> list[str]:
    """Every collection a job reads: its own, and for an experiment each variant's, from the report once it
    has run, else from the request (while it is queued or running). A request that does not parse names an
    impossible collection, so only a key that reads every collection sees it."""
    if job.kind != "experiment":
        return [job.collection]
    ran = (job.report or {}).get("variants")
    if ran:
        return sorted({v.get("collection") or job.collection for v in ran})
    from service.jobs.requests import parse_variants

    try:
        variants = parse_variants(list((job.request or {}).get("variants") or []))
    except Exception:
        return sorted({job.collection, "\x00unparsed"})
    return sorted({job.collection, *(v.collection or job.collection for v in variants)})


def public(job: Job) -> dict:
    """A job as the API shows it."""
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
        "collections": collections_of(job),
    }


def golden_hash(request: dict | None) -> str | None:
    """A short hash of the golden set an audit or experiment ran on: two runs compare only on the same set."""
    cases = (request or {}).get("cases")
    if not cases:
        return None
    return hashlib.sha256(json.dumps(cases, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]


def summary_of(job: Job) -> dict:
    """A listed audit or experiment: status, progress, the settings it ran with, the golden set's hash, and
    the verdict counts and summary text (not the cases)."""
    out = {k: v for k, v in public(job).items() if k not in ("report", "files")}
    report = job.report or {}
    request = job.request or {}
    out["golden_hash"] = golden_hash(request)
    out["cases"] = len(request.get("cases") or [])
    if job.kind == "audit":
        out["settings"] = report.get("settings") or {
            k: request.get(k) for k in ("ks", "generate", "rerank", "judge") if k in request
        }
        out["verdicts"] = report.get("verdicts")
        out["summary"] = (report.get("summary") or {}).get("text")
    else:
        out["variants"] = [v.get("name") for v in report.get("variants", [])] or None
    return out
