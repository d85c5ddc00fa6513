"""query log and feedback

Revision ID: 0002_querylog
Revises: 0001_jobs
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002_querylog"
down_revision = "0001_jobs"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "query_log",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("route", sa.String(16), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("settings", Json, nullable=False),
        sa.Column("contexts", Json, nullable=False),
        sa.Column("stage_tops", Json, nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("citations", Json, nullable=False),
        sa.Column("generator", sa.String(64), nullable=True),
        sa.Column("declined", sa.Boolean(), nullable=False),
        sa.Column("generation_error", sa.String(64), nullable=True),
        sa.Column("timings", Json, nullable=False),
        sa.Column("top_score", sa.Float(), nullable=True),
        sa.Column("retriever_agreement", sa.Float(), nullable=True),
        sa.Column("faithfulness", sa.Float(), nullable=True),
        sa.Column("unsupported_claims", sa.Integer(), nullable=True),
        sa.Column("claims", Json, nullable=True),
        sa.Column("redacted", sa.Boolean(), nullable=False),
        sa.Column("labelled_case", sa.String(128), nullable=True),
    )
    op.create_index("ix_query_log_created", "query_log", ["created_at"])
    op.create_index("ix_query_log_collection_created", "query_log", ["collection", "created_at"])
    op.create_table(
        "query_feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("query_id", sa.String(32), sa.ForeignKey("query_log.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("rating", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("correct_doc_id", sa.String(512), nullable=True),
    )
    op.create_index("ix_query_feedback_query_id", "query_feedback", ["query_id"])


def downgrade() -> None:
    op.drop_table("query_feedback")
    op.drop_table("query_log")
