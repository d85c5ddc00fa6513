"""Tables. Add a model here, then a migration under migrations/versions (see migrations/README)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Float, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Json = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    pass


class Job(Base):
    """An ingest job or an audit. Times are Unix seconds. `replica` is the process that runs (ran) it."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # ingest | audit
    owner: Mapped[str] = mapped_column(String(64))  # who submitted it: "key:<hash of the API key>" or "open"
    collection: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # queued running succeeded partial failed cancelled interrupted
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    replica: Mapped[str | None] = mapped_column(String(128), nullable=True)
    cancel: Mapped[str | None] = mapped_column(String(32), nullable=True)  # a stop asked for while it runs
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)  # why it stopped early: a stable code
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # for people; never a server path
    files: Mapped[list] = mapped_column(Json, default=list)  # upload names (relative paths)
    upload_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    progress: Mapped[dict] = mapped_column(Json, default=dict)
    request: Mapped[dict | None] = mapped_column(Json, nullable=True)  # what the job was asked (audit options)
    report: Mapped[dict | None] = mapped_column(Json, nullable=True)

    __table_args__ = (
        Index("ix_jobs_claim", "kind", "status", "owner", "created_at"),
        Index("ix_jobs_owner_status", "owner", "status"),
        Index("ix_jobs_replica_status", "replica", "status"),
        Index("ix_jobs_finished", "kind", "finished_at"),
    )
