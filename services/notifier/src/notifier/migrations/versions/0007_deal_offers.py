"""deals.offered_to: the round robin remembers whom each unassigned deal went to (instead
of each event, rotation_turns)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'deals',
        sa.Column(
            'offered_to',
            sa.BigInteger(),
            nullable=True,
            comment='round robin: the manager told of this deal while it is unassigned',
        ),
    )
    # The new leads the round robin gave out before: their deals keep that manager.
    op.execute(
        """
        INSERT INTO deals AS d (deal_id, offered_to)
        SELECT DISTINCT ON (n.deal_id) n.deal_id, t.user_id
          FROM rotation_turns AS t
          JOIN notifications AS n ON n.event_id = t.event_id AND n.user_id = t.user_id AND n.deal_id IS NOT NULL
         WHERE t.rotation = 'new_lead'
         ORDER BY n.deal_id, t.taken_at DESC
        ON CONFLICT (deal_id) DO UPDATE SET offered_to = EXCLUDED.offered_to
        """
    )
    op.drop_index('ix_rotation_turns_taken_at', table_name='rotation_turns')
    op.drop_table('rotation_turns')
    op.execute("DELETE FROM rotations WHERE name <> 'new_lead'")
    op.alter_column(
        'rotations',
        'name',
        existing_type=sa.String(length=32),
        existing_nullable=False,
        comment='what is handed out in turn: new_lead',
        existing_comment='the kind of notification taken in turn: new_lead, ...',
    )


def downgrade() -> None:
    op.alter_column(
        'rotations',
        'name',
        existing_type=sa.String(length=32),
        existing_nullable=False,
        comment='the kind of notification taken in turn: new_lead, ...',
        existing_comment='what is handed out in turn: new_lead',
    )
    op.create_table(
        'rotation_turns',
        sa.Column('event_id', sa.String(length=100), nullable=False, comment='the event whose turn it was'),
        sa.Column('rotation', sa.String(length=32), nullable=False, comment='rotations.name'),
        sa.Column('user_id', sa.BigInteger(), nullable=False, comment='the manager the event went to'),
        sa.Column('taken_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('event_id'),
    )
    op.create_index('ix_rotation_turns_taken_at', 'rotation_turns', ['taken_at'], unique=False)
    op.drop_column('deals', 'offered_to')
