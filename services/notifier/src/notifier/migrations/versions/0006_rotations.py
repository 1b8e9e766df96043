"""rotations, rotation_turns: unassigned leads handed to one manager at a time, in turn

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'rotations',
        sa.Column(
            'name', sa.String(length=32), nullable=False, comment='the kind of notification taken in turn: new_lead, ...'
        ),
        sa.Column('last_user_id', sa.BigInteger(), nullable=True, comment='the manager whose turn it was last'),
        sa.Column('turns', sa.BigInteger(), server_default='0', nullable=False, comment='turns given so far'),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
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


def downgrade() -> None:
    op.drop_index('ix_rotation_turns_taken_at', table_name='rotation_turns')
    op.drop_table('rotation_turns')
    op.drop_table('rotations')
