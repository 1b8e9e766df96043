"""handled Telegram updates

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('handled_updates',
    sa.Column('update_id', sa.BigInteger(), autoincrement=False, nullable=False, comment="Telegram's update_id"),
    sa.Column('handled_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('update_id')
    )


def downgrade() -> None:
    op.drop_table('handled_updates')
