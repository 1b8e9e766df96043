"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('fires',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('job', sa.String(length=40), nullable=False),
    sa.Column('slot', sa.String(length=50), nullable=False, comment='UTC moment (20261206T090000Z) or manual-<command id>'),
    sa.Column('scheduled_for', sa.DateTime(timezone=True), nullable=False),
    sa.Column('fired_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('manual', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('requested_by_user_id', sa.BigInteger(), nullable=True),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='pending', nullable=False, comment='pending, done or failed'),
    sa.Column('counts', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'done', 'failed')", name='ck_fires_status'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job', 'slot', name='ux_fires_job_slot')
    )
    op.create_index('ix_fires_fired', 'fires', ['fired_at'], unique=False)
    op.create_index('ix_fires_job_fired', 'fires', ['job', 'fired_at'], unique=False)
    op.create_table('jobs',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False, comment='interval or cron'),
    sa.Column('expression', sa.String(length=100), nullable=False, comment='seconds (interval) or a 5-field cron'),
    sa.Column('timezone', sa.String(length=64), nullable=False, comment='IANA zone a cron expression is read in'),
    sa.Column('owner', sa.String(length=40), nullable=False, comment='the service that handles the ticks'),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('enabled_set_at', sa.DateTime(timezone=True), nullable=True, comment='when the command that last set enabled was given'),
    sa.Column('active_since', sa.DateTime(timezone=True), nullable=False, comment='slots before it are never fired: the job did not exist, was off or had another schedule'),
    sa.Column('revision', sa.BigInteger(), server_default='1', nullable=False, comment='grows with every change'),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('interval', 'cron')", name='ck_jobs_kind'),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('event_id', sa.String(length=100), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('correlation_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    op.create_index('ix_outbox_unpublished', 'outbox', ['id'], unique=False, postgresql_where=sa.text('published_at IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_outbox_unpublished', table_name='outbox', postgresql_where=sa.text('published_at IS NULL'))
    op.drop_table('outbox')
    op.drop_table('jobs')
    op.drop_index('ix_fires_job_fired', table_name='fires')
    op.drop_index('ix_fires_fired', table_name='fires')
    op.drop_table('fires')
