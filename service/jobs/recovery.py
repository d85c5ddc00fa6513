"""Recovery and retention: running jobs of replicas that are gone are queued again (taken over by another
replica) until they have had `job_max_attempts` runs, then marked `interrupted`; finished jobs are kept
`job_keep_last` per kind per owner and `job_keep_days`; staging folders no active job owns are removed."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from sqlalchemy import delete, func, select, update

from core.settings import Settings
from service.db import Database, Job
from service.jobs.context import ACTIVE, FINISHED, STOPS

log = logging.getLogger("rag.jobs")


def sweep(db: Database, liveness, replica: str, uploads: Path, max_attempts: int = 1) -> tuple[list[str], set[str]]:
    """The running jobs of replicas (other than `replica`) that are gone: each is queued again, to be taken over
    by whichever replica claims it next, until it has had `max_attempts` runs; then it is marked `interrupted`.
    An ingest job's collection work folder under `uploads` goes (its staged uploads stay while it is queued).
    Returns the ids swept and, of those, the ones queued again."""
    ids: list[str] = []
    requeued: set[str] = set()
    with db.session() as s:
        replicas = s.scalars(
            select(Job.replica).distinct().where(Job.status == "running", Job.replica != replica)
        ).all()
        for other in replicas:
            if other is None or not liveness.gone(s, other):
                continue
            rows = s.execute(
                select(Job.id, Job.kind, Job.collection, Job.progress, Job.cancel).where(
                    Job.replica == other, Job.status == "running"
                )
            ).all()
            for r in rows:  # while still `running` to others, so no job of the collection starts meanwhile
                if r.kind == "ingest":
                    shutil.rmtree(uploads / r.collection, ignore_errors=True)
            status, message = STOPS["replica_gone"]
            again = [r for r in rows if not r.cancel and attempts(r.progress) + 1 < max_attempts]
            for r in again:
                kept = {k: v for k, v in (r.progress or {}).items() if k == "total" or k.endswith("_total")}
                s.execute(
                    update(Job)
                    .where(Job.id == r.id, Job.status == "running", Job.replica == other)
                    .values(status="queued", replica=None, progress={**kept, "attempts": attempts(r.progress) + 1})
                )
                requeued.add(r.id)
            gone = [r.id for r in rows if r.id not in requeued]
            s.execute(
                update(Job)
                .where(Job.id.in_(gone), Job.status == "running", Job.replica == other)
                .values(status=status, reason="replica_gone", error=message, finished_at=time.time())
            )
            log.warning(
                "replica %s is gone: %d running job(s) queued again, %d marked interrupted",
                other,
                len(again),
                len(gone),
            )
            ids += [r.id for r in rows]
    return ids, requeued


def attempts(progress: dict | None) -> int:
    """How many earlier runs of a job were cut short by their replica's death."""
    return int((progress or {}).get("attempts", 0))


def prune(db: Database, settings: Settings, kinds) -> int:
    """Drop finished jobs past the retention age, or past the newest `job_keep_last` per kind per owner (one
    key's audits never push out another's); return how many went."""
    cutoff = time.time() - settings.job_keep_days * 86400
    n = 0
    with db.session() as s:
        n += s.execute(delete(Job).where(Job.status.in_(FINISHED), Job.finished_at < cutoff)).rowcount
        rank = (
            func.row_number()
            .over(partition_by=(Job.kind, Job.owner), order_by=(Job.finished_at.desc(), Job.id))
            .label("rank")
        )
        ranked = select(Job.id, rank).where(Job.kind.in_(sorted({"ingest", "audit", *kinds})), Job.status.in_(FINISHED))
        ranked = ranked.subquery()
        old = s.scalars(select(ranked.c.id).where(ranked.c.rank > settings.job_keep_last)).all()
        if old:
            n += s.execute(delete(Job).where(Job.id.in_(old))).rowcount
    return n


def remove_stale_staging(db: Database, staging: Path, older_than_s: float = 3600) -> None:
    """Staging folders no queued or running job owns (a process died mid-upload), once they are old."""
    with db.session(read_only=True) as s:
        active = set(s.scalars(select(Job.id).where(Job.status.in_(ACTIVE))).all())
    for folder in staging.iterdir() if staging.exists() else []:
        try:
            if folder.name not in active and time.time() - folder.stat().st_mtime > older_than_s:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass
