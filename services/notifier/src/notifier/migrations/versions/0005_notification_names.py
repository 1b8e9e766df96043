"""notifications.deal_id, contact_name, contact_at, renaming_at; deals.contact_at: a
customer's newer name edited into what was sent

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT_BEFORE = 'deferred: the rendered message to send later'
_TEXT_AFTER = "the rendered message: deferred, to send later; about a deal, to correct the customer's name"
_MARKUP_BEFORE = 'deferred: its inline keyboard'
_MARKUP_AFTER = "the text's inline keyboard"


def upgrade() -> None:
    op.add_column(
        'deals',
        sa.Column(
            'contact_at',
            sa.DateTime(timezone=True),
            nullable=True,
            comment='occurred_at of the newest event contact_name came from',
        ),
    )
    op.execute('UPDATE deals SET contact_at = snapshot_at WHERE contact_name IS NOT NULL')
    op.add_column(
        'notifications',
        sa.Column('deal_id', sa.BigInteger(), nullable=True, comment='the deal whose customer the text names'),
    )
    op.add_column(
        'notifications',
        sa.Column(
            'contact_name', sa.String(length=300), nullable=True, comment="the customer's name as the text shows it"
        ),
    )
    op.add_column(
        'notifications',
        sa.Column(
            'contact_at',
            sa.DateTime(timezone=True),
            nullable=True,
            comment='occurred_at of the event that name came from',
        ),
    )
    op.add_column(
        'notifications',
        sa.Column(
            'renaming_at',
            sa.DateTime(timezone=True),
            nullable=True,
            comment='when an edit to a newer name began (a lease)',
        ),
    )
    op.alter_column(
        'notifications', 'text', existing_type=sa.Text(), comment=_TEXT_AFTER, existing_comment=_TEXT_BEFORE
    )
    op.alter_column(
        'notifications',
        'markup',
        existing_type=postgresql.JSONB(astext_type=sa.Text()),
        comment=_MARKUP_AFTER,
        existing_comment=_MARKUP_BEFORE,
    )
    op.create_index(
        'ix_notifications_deal',
        'notifications',
        ['deal_id'],
        unique=False,
        postgresql_where=sa.text('deal_id IS NOT NULL'),
    )


def downgrade() -> None:
    op.drop_index('ix_notifications_deal', table_name='notifications', postgresql_where=sa.text('deal_id IS NOT NULL'))
    op.alter_column(
        'notifications',
        'markup',
        existing_type=postgresql.JSONB(astext_type=sa.Text()),
        comment=_MARKUP_BEFORE,
        existing_comment=_MARKUP_AFTER,
    )
    op.alter_column(
        'notifications', 'text', existing_type=sa.Text(), comment=_TEXT_BEFORE, existing_comment=_TEXT_AFTER
    )
    op.drop_column('notifications', 'renaming_at')
    op.drop_column('notifications', 'contact_at')
    op.drop_column('notifications', 'contact_name')
    op.drop_column('notifications', 'deal_id')
    op.drop_column('deals', 'contact_at')
