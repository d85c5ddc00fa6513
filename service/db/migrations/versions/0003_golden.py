"""golden sets with their change history; one feedback vote per key and query

Revision ID: 0003_golden
Revises: 0002_querylog
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003_golden"
down_revision = "0002_querylog"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "golden_sets",
        sa.Column("collection", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("imported", sa.Integer(), nullable=False),
    )
    op.create_table(
        "golden_cases",
        sa.Column("collection", sa.String(64), primary_key=True),
        sa.Column("case_id", sa.String(128), primary_key=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("question_norm", sa.Text(), nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
    )
    op.create_index("ix_golden_cases_position", "golden_cases", ["collection", "position"])
    op.create_index("ix_golden_cases_question", "golden_cases", ["collection", "question_norm"])
    op.create_table(
        "golden_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("collection", sa.String(64), nullable=False),
        sa.Column("case_id", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("who", sa.String(64), nullable=False),
        sa.Column("before", Json, nullable=True),
        sa.Column("after", Json, nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("reverts", sa.Integer(), nullable=True),
    )
    op.create_index("ix_golden_changes_collection", "golden_changes", ["collection", "id"])
    op.create_index("ix_golden_changes_case", "golden_changes", ["collection", "case_id", "id"])
    # One vote per key and query: votes before this migration have no voter (NULLs never collide).
    with op.batch_alter_table("query_feedback") as batch:
        batch.add_column(sa.Column("voter", sa.String(64), nullable=True))
    op.create_index("ux_query_feedback_voter", "query_feedback", ["query_id", "voter"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_query_feedback_voter", "query_feedback")
    with op.batch_alter_table("query_feedback") as batch:
        batch.drop_column("voter")
    op.drop_table("golden_changes")
    op.drop_table("golden_cases")
    op.drop_table("golden_sets")
