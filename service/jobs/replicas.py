"""Replica guards (issue 20), checked at start-up before the model and the store are loaded.

The embedded Qdrant store (Qdrant Edge under `RAG_DATA_DIR`) has one owner. Two replicas sharing one job
database but each with its own embedded store would answer from different data: a document uploaded through
one is missing from the other, and which store a job lands in depends on which replica claimed it. So:

- `RAG_REPLICAS` above 1 needs a Qdrant server (`RAG_QDRANT_URL`) and a shared database (`RAG_DATABASE_URL`);
  start-up refuses otherwise, naming the fix.
- With the embedded store, the replica holds the database's "embedded store" lock for its whole life (a
  session-level advisory lock on PostgreSQL, released by the server however the process ends; an flock'ed
  file beside a SQLite database). A second live replica with an embedded store on the same database is
  refused at start-up, whatever `RAG_REPLICAS` says: one replica, told it is alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import text

from core.errors import ConfigError
from core.settings import Settings
from service.db import Database
from service.db.engine import lock_key

log = logging.getLogger("rag.jobs")

FIX = (
    "set RAG_QDRANT_URL to a Qdrant server every replica shares (and RAG_DATABASE_URL, RAG_UPLOADS_DIR shared "
    "too; see guides/scaling.md and docker-compose.yml), or run a single replica"
)


def check_layout(settings: Settings) -> None:
    """Refuse a configuration that cannot serve `replicas` replicas (raises ConfigError naming the fix)."""
    if settings.replicas <= 1:
        return
    if settings.qdrant_url is None:
        raise ConfigError(
            f"RAG_REPLICAS={settings.replicas} with the embedded Qdrant store (RAG_DATA_DIR): the embedded store "
            f"has one owner, so each replica would answer from its own data; {FIX}"
        )
    if settings.database_url is None:
        raise ConfigError(
            f"RAG_REPLICAS={settings.replicas} without RAG_DATABASE_URL: each replica would keep its jobs in its "
            "own SQLite file; set RAG_DATABASE_URL=postgresql://... to a database the replicas share"
        )


class StoreLock:
    """Held for the process's life by the one replica that may serve with an embedded store on a database."""

    def __init__(self, db: Database):
        self.db = db
        self._conn = None
        self._file: FileLock | None = None

    def acquire(self) -> None:
        refused = ConfigError(
            "another replica with an embedded Qdrant store is serving from this database "
            f"({self.db.url.render_as_string(hide_password=True)}); the embedded store has one owner, so two "
            f"replicas would answer from different data. {FIX[0].upper()}{FIX[1:]}"
        )
        if self.db.is_postgres:
            conn = self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            taken = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key("embedded-store", "")})
            if not taken.scalar():
                conn.close()
                raise refused
            self._conn = conn
        elif self.db.url.database not in (None, "", ":memory:"):
            lock = FileLock(f"{Path(self.db.url.database)}.embedded-store.lock")
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise refused from None
            self._file = lock

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key("embedded-store", "")})
                self._conn.close()
            except Exception:
                pass
            self._conn = None
        if self._file is not None:
            self._file.release()
            self._file = None


def guard(settings: Settings, db: Database) -> StoreLock | None:
    """The start-up check: the layout, then, with the embedded store and a database URL (one that replicas could
    share), this database's store lock (None with a Qdrant server: replicas then share the server and need no
    such lock; None without a URL: see below). Raises ConfigError."""
    check_layout(settings)
    if settings.qdrant_url is not None or settings.database_url is None:
        # With no database URL the database is a SQLite file in the data dir: one data dir, one store, and the
        # store's own lock refuses a second process there (store_locked, naming the store and its owner).
        return None
    lock = StoreLock(db)
    lock.acquire()
    return lock
