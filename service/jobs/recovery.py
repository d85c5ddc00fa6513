"""Recovery and retention: running jobs of replicas that are gone are marked `interrupted`; finished jobs are
kept `job_keep_last` per kind and `job_keep_days`; staging folders no active job owns are removed."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from sqlalchemy import delete, select, update

from core.settings import Settings
from service.db import Database, Job
from service.jobs.context import ACTIVE, FINISHED, STOPS

log = logging.getLogger("rag.jobs")


def sweep(db: Database, liveness, replica: str, uploads: Path) -> list[str]:
    """Mark `interrupted` the running jobs of replicas (other than `replica`) that are gone; return their ids.
    An interrupted ingest job's collection work folder under `uploads` goes too."""
    ids: list[str] = []
    with db.session() as s:
        replicas = s.scalars(
            select(Job.replica).distinct().where(Job.status == "running", Job.replica != replica)
        ).all()
        for other in replicas:
            if other is None or not liveness.gone(s, other):
                continue
            rows = s.execute(
                select(Job.id, Job.kind, Job.collection).where(Job.replica == other, Job.status == "running")
            ).all()
            gone = [r.id for r in rows]
            for r in rows:  # while still `running` to others, so no job of the collection starts meanwhile
                if r.kind == "ingest":
                    shutil.rmtree(uploads / r.collection, ignore_errors=True)
            status, message = STOPS["replica_gone"]
            s.execute(
                update(Job)
                .where(Job.id.in_(gone), Job.status == "running")
                .values(status=status, reason="replica_gone", error=message, finished_at=time.time())
            )
            log.warning("replica %s is gone: %d running job(s) marked interrupted", other, len(gone))
            ids += gone
    return ids


def prune(db: Database, settings: Settings, kinds) -> int:
    """Drop finished jobs past the retention age or count (per kind); return how many went."""
    cutoff = time.time() - settings.job_keep_days * 86400
    n = 0
    with db.session() as s:
        n += s.execute(delete(Job).where(Job.status.in_(FINISHED), Job.finished_at < cutoff)).rowcount
        for kind in sorted({"ingest", "audit", *kinds}):
            old = s.scalars(
                select(Job.id)
                .where(Job.kind == kind, Job.status.in_(FINISHED))
                .order_by(Job.finished_at.desc(), Job.id)
                .offset(settings.job_keep_last)
            ).all()
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
