"""The notifier schema: Telegram links, the one-time link codes learnt from crm, the
notification log (for a notification about a deal also its text and the customer's name
it shows, so that a newer name can be edited in), the Telegram updates already handled,
the managers' preferences, a projection of crm's deals (for ``/deals``, ``/stats`` and
what notifications show, and to whom the round robin gave each unassigned deal), the
commands sent to crm from the bot's buttons, whose turn it is in the round robin that
hands unassigned leads to one manager at a time, and the outbox.

Declared with SQLAlchemy Core (the notifier reads and writes them with a few hand-written
statements); the migrations use this metadata. Exactly-once rests on unique keys: a
manager has one linked chat and a chat one manager, and a notification is one row per
(event id, chat) inserted before anything is sent.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

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
    sa.Column(
        "text",
        sa.Text(),
        nullable=True,
        comment="the rendered message: deferred, to send later; about a deal, to correct the customer's name",
    ),
    sa.Column("markup", JSONB(), nullable=True, comment="the text's inline keyboard"),
    sa.Column("not_before", _TS, nullable=True, comment="deferred: when quiet hours end"),
    sa.Column("deal_id", sa.BigInteger(), nullable=True, comment="the deal whose customer the text names"),
    sa.Column("contact_name", sa.String(300), nullable=True, comment="the customer's name as the text shows it"),
    sa.Column("contact_at", _TS, nullable=True, comment="occurred_at of the event that name came from"),
    sa.Column("renaming_at", _TS, nullable=True, comment="when an edit to a newer name began (a lease)"),
    sa.UniqueConstraint("event_id", "chat_id", name="uq_notifications_event_chat"),
    sa.Index("ix_notifications_deferred", "not_before", postgresql_where=sa.text("status = 'deferred'")),
    sa.Index("ix_notifications_deal", "deal_id", postgresql_where=sa.text("deal_id IS NOT NULL")),
)

handled_updates = sa.Table(
    "handled_updates",
    metadata,
    sa.Column("update_id", sa.BigInteger(), primary_key=True, autoincrement=False, comment="Telegram's update_id"),
    sa.Column("handled_at", _TS, nullable=False),
)

preferences = sa.Table(
    "preferences",
    metadata,
    sa.Column("user_id", sa.BigInteger(), primary_key=True, autoincrement=False, comment="crm's user id"),
    sa.Column("muted", sa.Boolean(), nullable=False, server_default=sa.false(), comment="/mute: nothing is sent"),
    sa.Column(
        "muted_kinds",
        ARRAY(sa.String(32)),
        nullable=False,
        server_default="{}",
        comment="kinds of notification this manager does not want",
    ),
    sa.Column("quiet_start", sa.Time(), nullable=True, comment="quiet hours (business time zone): from"),
    sa.Column("quiet_end", sa.Time(), nullable=True, comment="quiet hours: until (what came meanwhile waits)"),
    sa.Column("updated_at", _TS, nullable=False),
)

deals = sa.Table(
    "deals",
    metadata,
    sa.Column("deal_id", sa.BigInteger(), primary_key=True, autoincrement=False, comment="crm's deal id"),
    sa.Column("conversation_id", sa.BigInteger(), nullable=True),
    sa.Column("assignee_id", sa.BigInteger(), nullable=True),
    sa.Column("status", sa.String(8), nullable=True, comment="open, won or lost"),
    sa.Column("stage", sa.String(64), nullable=True),
    sa.Column("platform", sa.String(16), nullable=True),
    sa.Column("contact_name", sa.String(300), nullable=True),
    sa.Column("snapshot_at", _TS, nullable=True, comment="occurred_at of the newest deal snapshot applied"),
    sa.Column("contact_at", _TS, nullable=True, comment="occurred_at of the newest event contact_name came from"),
    sa.Column("last_customer_at", _TS, nullable=True, comment="the customer's newest message"),
    sa.Column("last_customer_text", sa.Text(), nullable=True),
    sa.Column("last_reply_at", _TS, nullable=True, comment="our newest reply that reached the customer"),
    sa.Column("ai_version", sa.Integer(), nullable=True, comment="transcript version of the summary kept"),
    sa.Column("ai_summary", sa.Text(), nullable=True),
    sa.Column("ai_intent", sa.String(32), nullable=True),
    sa.Column("ai_temperature", sa.String(8), nullable=True),
    sa.Column(
        "offered_to",
        sa.BigInteger(),
        nullable=True,
        comment="round robin: the manager told of this deal while it is unassigned",
    ),
    sa.Index("ix_deals_assignee_waiting", "assignee_id", "last_customer_at"),
)

replies = sa.Table(
    "replies",
    metadata,
    sa.Column("message_id", sa.BigInteger(), primary_key=True, autoincrement=False, comment="crm's message id"),
    sa.Column("user_id", sa.BigInteger(), nullable=True, comment="the author; null for Meta-inbox replies"),
    sa.Column("deal_id", sa.BigInteger(), nullable=False),
    sa.Column("sent_at", _TS, nullable=False),
    sa.Column("response_seconds", sa.Integer(), nullable=True),
    sa.Index("ix_replies_user_sent", "user_id", "sent_at"),
)

actions = sa.Table(
    "actions",
    metadata,
    sa.Column("command_id", sa.String(100), primary_key=True, comment="the crm.cmd.* event id"),
    sa.Column("kind", sa.String(16), nullable=False, comment="take or reply"),
    sa.Column("user_id", sa.BigInteger(), nullable=False),
    sa.Column("chat_id", sa.BigInteger(), nullable=False),
    sa.Column("deal_id", sa.BigInteger(), nullable=False),
    sa.Column("text", sa.Text(), nullable=True, comment="reply: what the manager wrote"),
    sa.Column("status", sa.String(16), nullable=False, comment="pending, done, rejected or failed"),
    sa.Column("reason", sa.Text(), nullable=True, comment="why crm or Meta refused it"),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("answered_at", _TS, nullable=True),
    sa.Index("ix_actions_pending", "deal_id", "user_id", postgresql_where=sa.text("status = 'pending'")),
)

reply_drafts = sa.Table(
    "reply_drafts",
    metadata,
    sa.Column("chat_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger(), nullable=False),
    sa.Column("deal_id", sa.BigInteger(), nullable=False, comment="the chat's next text is a reply on this deal"),
    sa.Column("expires_at", _TS, nullable=False),
)

rotations = sa.Table(
    "rotations",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True, comment="what is handed out in turn: new_lead"),
    sa.Column("last_user_id", sa.BigInteger(), nullable=True, comment="the manager whose turn it was last"),
    sa.Column("turns", sa.BigInteger(), nullable=False, server_default="0", comment="turns given so far"),
    sa.Column("updated_at", _TS, nullable=False),
)

outbox = sa.Table("outbox", metadata, *outbox_columns())
