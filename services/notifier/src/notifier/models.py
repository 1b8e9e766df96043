"""The notifier schema: Telegram links, the one-time link codes learnt from crm, the
notification log, the Telegram updates already handled, and the outbox.

Declared with SQLAlchemy Core (the notifier reads and writes them with a few hand-written
statements); the migrations use this metadata. Exactly-once rests on unique keys: a
manager has one linked chat and a chat one manager, and a notification is one row per
(event id, chat) inserted before anything is sent.
"""

from __future__ import annotations

import sqlalchemy as sa

from jggl_common.outbox import outbox_columns

metadata = sa.MetaData()

_TS = sa.DateTime(timezone=True)

links = sa.Table(
    "links",
    metadata,
    sa.Column("user_id", sa.BigInteger(), primary_key=True, autoincrement=False, comment="crm's user id"),
    sa.Column("chat_id", sa.BigInteger(), nullable=False, unique=True, comment="the private chat with the bot"),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False, comment="admin or manager"),
    sa.Column("linked_at", _TS, nullable=False),
    sa.Column(
        "blocked_at",
        _TS,
        nullable=True,
        comment="when Telegram answered 403 (the user blocked the bot); /start clears it",
    ),
)

link_codes = sa.Table(
    "link_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True, comment="link_code_hash(code)"),
    sa.Column("user_id", sa.BigInteger(), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("expires_at", _TS, nullable=False),
    sa.Column("used_at", _TS, nullable=True),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
    sa.Column("event_id", sa.String(100), nullable=False),
    sa.Column("chat_id", sa.BigInteger(), nullable=False),
    sa.Column("user_id", sa.BigInteger(), nullable=True),
    sa.Column("kind", sa.String(32), nullable=False, comment="new_lead, ..."),
    sa.Column("status", sa.String(16), nullable=False, comment="pending, sent, skipped or failed"),
    sa.Column("retryable", sa.Boolean(), nullable=False, server_default=sa.false(), comment="failed: try again"),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("telegram_message_id", sa.BigInteger(), nullable=True),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("claimed_at", _TS, nullable=True, comment="when the current attempt began"),
    sa.Column("sent_at", _TS, nullable=True),
    sa.UniqueConstraint("event_id", "chat_id", name="uq_notifications_event_chat"),
)

handled_updates = sa.Table(
    "handled_updates",
    metadata,
    sa.Column("update_id", sa.BigInteger(), primary_key=True, autoincrement=False, comment="Telegram's update_id"),
    sa.Column("handled_at", _TS, nullable=False),
)

outbox = sa.Table("outbox", metadata, *outbox_columns())
