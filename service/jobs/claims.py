"""Claiming the next queued job: `SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite's writes are serial)
and a compare-and-set to `running`. Fair across owners (API keys) and across kinds: the owner with the fewest
jobs running goes first, then the one served least recently, FIFO within an owner. With `only_idle_owners`
(the last free worker of a process) only owners with no job running are served. Two ingest jobs never run at
once in one collection (their uploads share its work folder)."""

from __future__ import annotations

import time

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.orm import aliased

from service.db import Database, Job


def claim(db: Database, kinds: list[str], replica: str, *, only_idle_owners: bool = False) -> Job | None:
    """The next job of one of `kinds`, marked running by `replica`; fair across owners and kinds."""
    with db.session() as s:
        lanes = s.execute(
            select(Job.owner, func.min(Job.created_at))
            .where(Job.kind.in_(kinds), Job.status == "queued")
            .group_by(Job.owner)
        ).all()
        if not lanes:
            return None
        owners = [o for o, _ in lanes]
        running = dict(
            s.execute(
                select(Job.owner, func.count())
                .where(Job.owner.in_(owners), Job.status == "running")
                .group_by(Job.owner)
            ).all()
        )
        served = dict(
            s.execute(
                select(Job.owner, func.max(Job.started_at))
                .where(Job.owner.in_(owners), Job.started_at.is_not(None))
                .group_by(Job.owner)
            ).all()
        )
        if only_idle_owners:
            lanes = [lane for lane in lanes if not running.get(lane[0])]
        # fewest running first, then least recently served, then the oldest waiting job
        lanes.sort(key=lambda lane: (running.get(lane[0], 0), served.get(lane[0]) or 0.0, lane[1]))
        other = aliased(Job)
        busy = exists().where(other.kind == "ingest", other.status == "running", other.collection == Job.collection)
        for owner, _ in lanes:
            q = select(Job).where(
                Job.kind.in_(kinds), Job.status == "queued", Job.owner == owner, or_(Job.kind != "ingest", ~busy)
            )
            job = s.scalars(q.order_by(Job.created_at).limit(1).with_for_update(skip_locked=True)).first()
            if job is None:
                continue
            cas = update(Job).where(Job.id == job.id, Job.status == "queued")
            if job.kind == "ingest":
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
