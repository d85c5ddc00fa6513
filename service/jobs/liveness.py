"""Replica liveness: each process (replica) holds a lock for as long as it lives, so a running job is marked
`interrupted` only when its replica's lock can be taken, i.e. the process is gone. A session-level advisory
lock on PostgreSQL (`PgLiveness`), an flock'ed file next to a SQLite database (`FileLiveness`)."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import text

from core.settings import Settings
from service.db import Database
from service.db.engine import lock_key

log = logging.getLogger("rag.jobs")


class PgLiveness:
    """A session-level advisory lock per replica, held on a connection of its own for the process's life.
    PostgreSQL releases it when the session ends, however the process ended."""

    def __init__(self, db: Database):
        self.db = db
        self._conn = None
        self._guard = threading.Lock()
        self._lost = False  # logged once per loss, not at every check while the database is away

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
                if not self._lost:
                    log.error("the replica's database session was lost; its running jobs stop")
                self._lost = True
                try:
                    self._conn.invalidate()  # raises once it is closed (a failed earlier try): nothing to undo
                    self._conn.close()
                except Exception:
                    pass
                try:
                    self.hold(self.replica)
                    log.warning("the replica's database session is back; its lock is held again")
                    self._lost = False
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


class FileLiveness:
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


def liveness_for(db: Database, settings: Settings) -> PgLiveness | FileLiveness:
    """The liveness lock that fits the database: advisory locks on PostgreSQL, lock files beside SQLite."""
    if db.is_postgres:
        return PgLiveness(db)
    return FileLiveness(Path(db.url.database or settings.data_dir).parent / "replicas")
