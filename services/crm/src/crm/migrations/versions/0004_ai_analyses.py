"""The AI service's analyses on deals

A deal keeps the newest analysis of its conversation: besides the summary, intent,
temperature, manager score and provider it already had, the suggested next action, the
conversation's language, the per-criterion notes on the manager, the Gemini model, and
which analysis it is (the AI service's id and the transcript version it covered), so a
late or repeated analysis is recognised and ignored. The managers' AI score per period
is read from a partial index of the scored deals by analysis time.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deals", sa.Column("ai_version", sa.Integer(), nullable=True))
    op.add_column("deals", sa.Column("ai_next_action", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True))
    op.add_column("deals", sa.Column("ai_language", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=True))
    op.add_column("deals", sa.Column("ai_manager_notes", postgresql.JSONB(), nullable=True))
    op.add_column("deals", sa.Column("ai_model", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
    op.add_column("deals", sa.Column("ai_analysis_id", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_deals_ai_scored",
        "deals",
        ["ai_analyzed_at"],
        postgresql_include=["assignee_id", "ai_score"],
        postgresql_where=sa.text("ai_score IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_deals_ai_scored", table_name="deals")
    for column in ("ai_analysis_id", "ai_model", "ai_manager_notes", "ai_language", "ai_next_action", "ai_version"):
        op.drop_column("deals", column)
