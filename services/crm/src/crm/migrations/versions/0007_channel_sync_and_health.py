"""Channels remember how far the Meta backfill read and what the health check found

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("channels", sa.Column("synced_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "channels", sa.Column("health_status", sa.String(length=20), server_default="unknown", nullable=False)
    )
    op.add_column(
        "channels",
        sa.Column(
            "health_problems",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("channels", sa.Column("health_checked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("channels", sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for column in ("token_expires_at", "health_checked_at", "health_problems", "health_status", "synced_until"):
        op.drop_column("channels", column)
