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
    op.create_table('analyses',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('conversation_id', sa.BigInteger(), nullable=False),
    sa.Column('deal_id', sa.BigInteger(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False, comment='gemini or heuristic'),
    sa.Column('model', sa.String(length=100), nullable=True),
    sa.Column('first_message_id', sa.BigInteger(), nullable=True, comment='first message read in full'),
    sa.Column('last_message_id', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False, comment='completed or failed'),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='1', nullable=False),
    sa.Column('tokens_in', sa.Integer(), server_default='0', nullable=False),
    sa.Column('tokens_out', sa.Integer(), server_default='0', nullable=False),
    sa.Column('latency_ms', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_analyses_conversation', 'analyses', ['conversation_id', 'id'], unique=False)
    op.create_index('ux_analyses_completed_version', 'analyses', ['conversation_id', 'version', 'provider'], unique=True, postgresql_where=sa.text("status = 'completed'"))
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
    op.create_table('transcript_messages',
    sa.Column('message_id', sa.BigInteger(), autoincrement=False, nullable=False, comment="crm's message id"),
    sa.Column('conversation_id', sa.BigInteger(), nullable=False),
    sa.Column('deal_id', sa.BigInteger(), nullable=False),
    sa.Column('author', sa.String(length=16), nullable=False, comment='customer, manager or meta_inbox'),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('attachment_types', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    op.create_index('ix_transcript_messages_conversation', 'transcript_messages', ['conversation_id', 'sent_at', 'message_id'], unique=False)
    op.create_table('transcripts',
    sa.Column('conversation_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('deal_id', sa.BigInteger(), nullable=False, comment='the deal of the newest message'),
    sa.Column('version', sa.Integer(), nullable=False, comment='messages in the transcript'),
    sa.Column('last_message_at', sa.DateTime(timezone=True), nullable=False, comment='when the newest message was written'),
    sa.Column('last_message_id', sa.BigInteger(), nullable=False, comment='the newest message (ties by id)'),
    sa.Column('last_arrival_at', sa.DateTime(timezone=True), nullable=False, comment='when ai last learnt of a message (debounce)'),
    sa.Column('new_messages', sa.Integer(), server_default='0', nullable=False, comment='since the last analysis'),
    sa.Column('analysed_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('gemini_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True, comment='when to analyse next; null when nothing is owed'),
    sa.Column('last_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failures', sa.Integer(), server_default='0', nullable=False, comment='failed attempts in a row'),
    sa.PrimaryKeyConstraint('conversation_id')
    )
    op.create_index('ix_transcripts_due', 'transcripts', ['due_at'], unique=False, postgresql_where=sa.text('due_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_transcripts_due', table_name='transcripts', postgresql_where=sa.text('due_at IS NOT NULL'))
    op.drop_table('transcripts')
    op.drop_index('ix_transcript_messages_conversation', table_name='transcript_messages')
    op.drop_table('transcript_messages')
    op.drop_index('ix_outbox_unpublished', table_name='outbox', postgresql_where=sa.text('published_at IS NULL'))
    op.drop_table('outbox')
    op.drop_index('ux_analyses_completed_version', table_name='analyses', postgresql_where=sa.text("status = 'completed'"))
    op.drop_index('ix_analyses_conversation', table_name='analyses')
    op.drop_table('analyses')
