"""Query log tables: each query the service answered, and the feedback on it. Times are Unix seconds, as in
the jobs table. Migrations: migrations/versions/0002_querylog.py, 0003_golden.py (one vote per key)."""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db.models import Base, Json


class QueryRecord(Base):
    __tablename__ = "query_log"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    collection: Mapped[str] = mapped_column(String(64))
    route: Mapped[str] = mapped_column(String(16))  # query | stream | chat
    question: Mapped[str] = mapped_column(Text)
    settings: Mapped[dict] = mapped_column(Json, default=dict)  # retrieval parameters and request options
    contexts: Mapped[list] = mapped_column(Json, default=list)  # what the generator saw, with stage ranks
    stage_tops: Mapped[dict] = mapped_column(Json, default=dict)  # {stage: [[doc_id, score], ...]} top 10
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    citations: Mapped[list] = mapped_column(Json, default=list)
    generator: Mapped[str | None] = mapped_column(String(64), nullable=True)
    declined: Mapped[bool] = mapped_column(Boolean, default=False)
    generation_error: Mapped[str | None] = mapped_column(String(64), nullable=True)
    timings: Mapped[dict] = mapped_column(Json, default=dict)
    top_score: Mapped[float | None] = mapped_column(Float, nullable=True)  # best dense cosine (comparable)
    retriever_agreement: Mapped[float | None] = mapped_column(Float, nullable=True)  # top-10 doc overlap
    faithfulness: Mapped[float | None] = mapped_column(Float, nullable=True)
    unsupported_claims: Mapped[int | None] = mapped_column(Integer, nullable=True)
    claims: Mapped[list | None] = mapped_column(Json, nullable=True)
    redacted: Mapped[bool] = mapped_column(Boolean, default=False)
    labelled_case: Mapped[str | None] = mapped_column(String(128), nullable=True)  # golden case made from it

    __table_args__ = (
        Index("ix_query_log_created", "created_at"),
        Index("ix_query_log_collection_created", "collection", "created_at"),
    )


class Feedback(Base):
    __tablename__ = "query_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    query_id: Mapped[str] = mapped_column(String(32), ForeignKey("query_log.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    rating: Mapped[int] = mapped_column(SmallInteger)  # +1 / -1
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    correct_doc_id: Mapped[str | None] = mapped_column(String(512), nullable=True)
    voter: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the key's owner id: one vote per key

    __table_args__ = (Index("ux_query_feedback_voter", "query_id", "voter", unique=True),)
