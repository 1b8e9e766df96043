"""The inbox's "awaiting reply" list per assignee and unassigned, newest message first, as indexes

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Only the open deals whose customer waits: a small part of the table, read a page at a time.
    op.create_index(
        "ix_deals_waiting_assignee_last_message",
        "deals",
        ["assignee_id", sa.text("coalesce(last_message_at, '-infinity'::timestamptz)"), "id"],
        postgresql_where=sa.text("status = 'open' AND awaiting_reply_since IS NOT NULL"),
    )
    # The unassigned ones apart: "assignee_id IS NULL" does not let PostgreSQL read the index
    # above in order.
    op.create_index(
        "ix_deals_waiting_unassigned_last_message",
        "deals",
        [sa.text("coalesce(last_message_at, '-infinity'::timestamptz)"), "id"],
        postgresql_where=sa.text("status = 'open' AND awaiting_reply_since IS NOT NULL AND assignee_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_deals_waiting_unassigned_last_message", table_name="deals")
    op.drop_index("ix_deals_waiting_assignee_last_message", table_name="deals")
