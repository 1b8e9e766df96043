"""The SLA episode a deal's breach and escalation were announced for

A deal remembers which waiting episode (its ``awaiting_reply_since``) ``crm.deal.sla_breached``
went out for, at each level, so each episode is announced once per level; a reply ends the
episode and the next customer message starts a new one. The sweep finds waiting open deals
through a partial index.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deals", sa.Column("sla_breach_since", sa.DateTime(timezone=True), nullable=True))
    op.add_column("deals", sa.Column("sla_escalation_since", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_deals_open_waiting",
        "deals",
        ["awaiting_reply_since"],
        postgresql_where=sa.text("status = 'open' AND awaiting_reply_since IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_deals_open_waiting", table_name="deals")
    op.drop_column("deals", "sla_escalation_since")
    op.drop_column("deals", "sla_breach_since")
