"""links.blocked_at: a chat that blocked the bot

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'links',
        sa.Column(
            'blocked_at',
            sa.DateTime(timezone=True),
            nullable=True,
            comment='when Telegram answered 403 (the user blocked the bot); /start clears it',
        ),
    )


def downgrade() -> None:
    op.drop_column('links', 'blocked_at')
