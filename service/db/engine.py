"""One engine and session factory per process, migrations at start-up, and the database's locks.

SQLite (the default, a file in the data dir): WAL, a busy timeout, and write transactions that start with
BEGIN IMMEDIATE, so two writers queue instead of failing half-way. PostgreSQL: psycopg 3, pre-pinged pool.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "rag_schema_version"
LOCK_NAMESPACE = 0x5241_4700  # "RAG\0": the high bits of every advisory lock key this service takes


def database_url(settings: Settings) -> str:
    """RAG_DATABASE_URL, else a SQLite file in the data dir. `postgresql://` means psycopg 3."""
    if settings.database_url is None:
        return f"sqlite:///{(Path(settings.data_dir) / 'rag.db').absolute()}"
    url = make_url(settings.database_url.get_secret_value())
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def lock_key(namespace: str, name: str) -> int:
    """A signed 64-bit advisory lock key for (namespace, name), in this service's key space."""
    digest = int.from_bytes(hashlib.sha256(f"{namespace}\x1f{name}".encode()).digest()[:4], "big")
    return (LOCK_NAMESPACE << 32) | digest  # < 2**63: a valid bigint


class Database:
    def __init__(self, url: str):
        self.url = make_url(url)
        self.is_postgres = self.url.get_backend_name() == "postgresql"
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database not in (None, "", ":memory:"):
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        args = {"check_same_thread": False, "timeout": 30} if self.is_sqlite else {}
        self.engine: Engine = create_engine(self.url, pool_pre_ping=True, connect_args=args)
        if self.is_sqlite:
            self._sqlite_setup(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.engine.execution_options(rag_read_only=True), expire_on_commit=False)

    @staticmethod
    def _sqlite_setup(engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection):
            read_only = conn.get_execution_options().get("rag_read_only", False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    @contextmanager
    def session(self, read_only: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back on an exception."""
        with (self._read_sessions if read_only else self._sessions).begin() as s:
            yield s

    def xact_lock(self, session: Session, namespace: str, name: str) -> None:
        """Serialise this transaction with any other taking the same lock (PostgreSQL; SQLite's write
        transactions are serial already)."""
        if self.is_postgres:
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(namespace, name)})

    def try_xact_lock(self, session: Session, namespace: str, name: str) -> bool:
        """Take the lock for this transaction if nobody holds it (PostgreSQL only)."""
        k = lock_key(namespace, name)
        return bool(session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": k}).scalar())

    def migrate(self) -> None:
        """Bring the schema to the newest migration; replicas starting together take turns."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        guard = FileLock(f"{self.url.database}.migrate.lock") if self.is_sqlite and self.url.database else None
        if guard is not None:
            guard.acquire(timeout=120)
        try:
            with self.engine.begin() as conn:
                if self.is_postgres:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key("migrate", "")})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        finally:
            if guard is not None:
                guard.release()

    def close(self) -> None:
        self.engine.dispose()
