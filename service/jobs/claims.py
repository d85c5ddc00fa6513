"""Claiming the next queued job: `SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite's writes are serial)
and a compare-and-set to `running`. Fair across owners (the API key served least recently goes first, FIFO
within an owner); two ingest jobs never run at once in one collection (their uploads share its work folder)."""

from __future__ import annotations

import time

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import aliased

from service.db import Database, Job


def claim(db: Database, kind: str, replica: str) -> Job | None:
    """The next job of `kind`, marked running by `replica`; fair across owners."""
    with db.session() as s:
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
                db.xact_lock(s, "collection", job.collection)
                cas = cas.where(~busy)
            now = time.time()
            done = s.execute(
                cas.values(status="running", replica=replica, started_at=now),
                execution_options={"synchronize_session": False},
            )
            if done.rowcount == 1:
                s.refresh(job)
                return job
    return None
