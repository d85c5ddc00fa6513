"""Golden-set tables: each collection's cases, and the append-only history of every change to them (who, what,
when, the case before and after). Times are Unix seconds, as in the jobs table. A set's row records that the
collection's old file (data_dir/golden/<collection>.jsonl) was imported, once. Migration:
migrations/versions/0003_golden.py."""

from __future__ import annotations

import re

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db.models import Base, Json


def norm_question(question: str) -> str:
    """A question as compared across the log and the golden set: lower-case words, nothing else."""
    return " ".join(re.findall(r"\w+", question.lower()))


class GoldenSet(Base):
    """One collection's golden set exists (its file was imported, or there was none to import)."""

    __tablename__ = "golden_sets"

    collection: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    imported: Mapped[int] = mapped_column(Integer, default=0)  # cases taken from the old file


class GoldenCase(Base):
    """A case as the audit's loader reads it (`data`: the JSONL row), where it sits in the set (`position`: the
    line it has when the set is written out), and its version (bumped on every change)."""

    __tablename__ = "golden_cases"

    collection: Mapped[str] = mapped_column(String(64), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    question_norm: Mapped[str] = mapped_column(Text)  # norm_question(question): the log's queries find it by this
    data: Mapped[dict] = mapped_column(Json)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_golden_cases_position", "collection", "position"),
        Index("ix_golden_cases_question", "collection", "question_norm"),
    )


class GoldenChange(Base):
    """One change to a case, never updated or deleted: create, update, delete, revert (of change `reverts`) or
    import (the whole old file, `case_id` empty). `before`/`after` are the case's rows (null: absent)."""

    __tablename__ = "golden_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))
    at: Mapped[float] = mapped_column(Float)
    who: Mapped[str] = mapped_column(String(64))  # the key's owner id ("key:<hash>") or "open"
    before: Mapped[dict | None] = mapped_column(Json, nullable=True)
    after: Mapped[dict | None] = mapped_column(Json, nullable=True)
    position: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # where a deleted case sat
    reverts: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        Index("ix_golden_changes_collection", "collection", "id"),
        Index("ix_golden_changes_case", "collection", "case_id", "id"),
    )
