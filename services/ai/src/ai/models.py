"""The ai schema: its own projection of the conversations and the analyses it made.

Everything here is built from crm's events; ai never reads crm's tables. The tables are
declared with SQLAlchemy Core (ai reads and writes them with a few hand-written
statements and needs no ORM objects); the migrations and ``alembic check`` use this
metadata. Exactly-once rests on unique keys: a message is stored once per crm message
id, and a transcript version has at most one completed analysis per provider.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from jggl_common.outbox import outbox_columns

metadata = sa.MetaData()

_TS = sa.DateTime(timezone=True)

transcripts = sa.Table(
    "transcripts",
    metadata,
    sa.Column("conversation_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("deal_id", sa.BigInteger(), nullable=False, comment="the deal of the newest message"),
    sa.Column("version", sa.Integer(), nullable=False, comment="messages in the transcript"),
    sa.Column("last_message_at", _TS, nullable=False, comment="when the newest message was written"),
    sa.Column("last_message_id", sa.BigInteger(), nullable=False, comment="the newest message (ties by id)"),
    sa.Column("last_arrival_at", _TS, nullable=False, comment="when ai last learnt of a message (debounce)"),
    sa.Column("new_messages", sa.Integer(), nullable=False, server_default="0", comment="since the last analysis"),
    sa.Column("analysed_version", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("gemini_version", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("due_at", _TS, nullable=True, comment="when to analyse next; null when nothing is owed"),
    sa.Column("last_started_at", _TS, nullable=True),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("claimed_until", _TS, nullable=True),
    sa.Column("failures", sa.Integer(), nullable=False, server_default="0", comment="failed attempts in a row"),
    sa.Index("ix_transcripts_due", "due_at", postgresql_where=sa.text("due_at IS NOT NULL")),
)

transcript_messages = sa.Table(
    "transcript_messages",
    metadata,
    sa.Column("message_id", sa.BigInteger(), primary_key=True, autoincrement=False, comment="crm's message id"),
    sa.Column("conversation_id", sa.BigInteger(), nullable=False),
    sa.Column("deal_id", sa.BigInteger(), nullable=False),
    sa.Column("author", sa.String(16), nullable=False, comment="customer, manager or meta_inbox"),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("text", sa.Text(), nullable=True),
    sa.Column("attachment_types", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("sent_at", _TS, nullable=False),
    sa.Index("ix_transcript_messages_conversation", "conversation_id", "sent_at", "message_id"),
)

analyses = sa.Table(
    "analyses",
    metadata,
    sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
    sa.Column("conversation_id", sa.BigInteger(), nullable=False),
    sa.Column("deal_id", sa.BigInteger(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("provider", sa.String(16), nullable=False, comment="gemini or heuristic"),
    sa.Column("model", sa.String(100), nullable=True),
    sa.Column("first_message_id", sa.BigInteger(), nullable=True, comment="first message read in full"),
    sa.Column("last_message_id", sa.BigInteger(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False, comment="completed or failed"),
    sa.Column("result", JSONB(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("tokens_in", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("tokens_out", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("latency_ms", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("created_at", _TS, nullable=False),
    sa.Index("ix_analyses_conversation", "conversation_id", "id"),
    sa.Index(
        "ux_analyses_completed_version",
        "conversation_id",
        "version",
        "provider",
        unique=True,
        postgresql_where=sa.text("status = 'completed'"),
    ),
)

outbox = sa.Table("outbox", metadata, *outbox_columns())
