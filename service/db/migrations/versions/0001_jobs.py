"""jobs: ingest jobs and audits

Revision ID: 0001_jobs
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_jobs"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("replica", sa.String(128), nullable=True),
        sa.Column("cancel", sa.String(32), nullable=True),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("files", Json, nullable=False),
        sa.Column("upload_bytes", sa.BigInteger(), nullable=False),
        sa.Column("progress", Json, nullable=False),
        sa.Column("request", Json, nullable=True),
        sa.Column("report", Json, nullable=True),
    )
    op.create_index("ix_jobs_claim", "jobs", ["kind", "status", "owner", "created_at"])
    op.create_index("ix_jobs_owner_status", "jobs", ["owner", "status"])
    op.create_index("ix_jobs_replica_status", "jobs", ["replica", "status"])
    op.create_index("ix_jobs_finished", "jobs", ["kind", "finished_at"])


def downgrade() -> None:
    op.drop_table("jobs")
