"""The crm schema: every table crm owns, in one place.

Exactly-once rests on unique constraints, not on locks: a repeat or a race hits a
constraint and is resolved by ``ON CONFLICT``. Timestamps are timezone-aware UTC.
Meta timestamps (ms) are kept as ``sent_at`` so history is ordered by when the customer
or manager wrote, not by when the webhook happened to arrive.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlmodel import Field, SQLModel

from jggl_common.contracts import utcnow

metadata = SQLModel.metadata


def _ts(**kwargs: Any) -> Any:
    return Field(sa_type=sa.DateTime(timezone=True), **kwargs)


def _json(default: Any) -> Any:
    return Field(
        default_factory=default,
        sa_column=sa.Column(
            JSONB, nullable=False, server_default=sa.text("'[]'::jsonb" if default is list else "'{}'::jsonb")
        ),
    )


class User(SQLModel, table=True):
    """A person who logs in: an admin or a manager."""

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, sa_column_kwargs={"unique": True}, index=False)
    name: str = Field(max_length=200)
    password_hash: str = Field(max_length=500)
    role: str = Field(max_length=20, description="admin | manager")
    is_active: bool = True
    tokens_valid_after: datetime | None = _ts(
        default=None,
        nullable=True,
        description="access tokens issued before this are refused (sign-out, deactivation, role or password change)",
    )
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class Channel(SQLModel, table=True):
    """A connected Facebook Page (platform messenger) or Instagram account."""

    __tablename__ = "channels"
    __table_args__ = (sa.UniqueConstraint("platform", "external_id", name="uq_channels_platform_external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=20, description="messenger | instagram")
    external_id: str = Field(max_length=64, description="Page id or Instagram account id")
    name: str | None = Field(default=None, max_length=200)
    access_token_sealed: str | None = Field(default=None, description="page access token, encrypted")
    needs_reauth: bool = False
    is_active: bool = True
    last_webhook_at: datetime | None = _ts(default=None)
    created_at: datetime = _ts(default_factory=utcnow)
    # Meta backfill: conversations updated up to this moment were read from the Conversations API.
    synced_until: datetime | None = _ts(default=None)
    # Health, as the channel_health job last found it.
    health_status: str = Field(
        default="unknown",
        max_length=20,
        sa_column_kwargs={"server_default": "unknown"},
        description="ok | problem | unknown",
    )
    health_problems: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_type=JSONB,
        sa_column_kwargs={"server_default": sa.text("'[]'::jsonb")},
        description="each problem found: {code, message}",
    )
    health_checked_at: datetime | None = _ts(default=None)
    token_expires_at: datetime | None = _ts(default=None, description="from debug_token; null: never or unknown")


class Contact(SQLModel, table=True):
    """A customer as one channel knows them (PSIDs and IGSIDs are scoped to the channel)."""

    __tablename__ = "contacts"
    __table_args__ = (
        sa.UniqueConstraint("channel_id", "external_id", name="uq_contacts_channel_external_id"),
        # Prefix search on names ("ив" finds "Иван") without scanning the table; with the id
        # and name in the index, the contacts a prefix matches are read from it alone.
        sa.Index("ix_contacts_lower_name", sa.text("lower(name) text_pattern_ops"), postgresql_include=["id", "name"]),
        # The enrichment sweep looks only at contacts whose profile is still to fetch.
        sa.Index(
            "ix_contacts_profile_pending",
            "profile_retry_at",
            postgresql_where=sa.text("profile_status = 'pending'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = Field(foreign_key="channels.id", index=True)
    platform: str = Field(max_length=20)
    external_id: str = Field(max_length=64, description="PSID or IGSID")
    name: str | None = Field(default=None, max_length=300)
    username: str | None = Field(default=None, max_length=300)
    avatar_url: str | None = None
    profile_status: str = Field(default="pending", max_length=20, description="pending | fetched | failed")
    profile_fetched_at: datetime | None = _ts(default=None)
    profile_attempts: int = Field(
        default=0, sa_column_kwargs={"server_default": "0"}, description="Graph API profile fetches tried so far"
    )
    profile_retry_at: datetime | None = _ts(
        default=None, description="not before this time: a lease while fetching, a backoff after throttling"
    )
    profile_error: str | None = Field(default=None, max_length=500, description="the last Graph error, if any")
    first_seen_at: datetime = _ts(default_factory=utcnow)
    last_seen_at: datetime = _ts(default_factory=utcnow)


class Conversation(SQLModel, table=True):
    """The chat between one contact and one channel."""

    __tablename__ = "conversations"
    __table_args__ = (sa.UniqueConstraint("channel_id", "contact_id", name="uq_conversations_channel_contact"),)

    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = Field(foreign_key="channels.id")
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    last_message_at: datetime | None = _ts(default=None)
    last_inbound_at: datetime | None = _ts(default=None, description="decides the 24 h / 7 day window")
    read_watermark: datetime | None = _ts(default=None, description="the customer has read everything sent until")
    delivered_watermark: datetime | None = _ts(default=None)
    created_at: datetime = _ts(default_factory=utcnow)


class Stage(SQLModel, table=True):
    """A pipeline stage; ``position`` orders them."""

    __tablename__ = "stages"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=50, sa_column_kwargs={"unique": True})
    name: str = Field(max_length=100)
    position: int = 0
    is_active: bool = True


class Deal(SQLModel, table=True):
    """A sales opportunity: one open deal per conversation at a time."""

    __tablename__ = "deals"
    __table_args__ = (
        # Exactly one open deal per conversation, whatever the races: the constraint decides.
        sa.Index(
            "uq_deals_one_open_per_conversation",
            "conversation_id",
            unique=True,
            postgresql_where=sa.text("status = 'open'"),
        ),
        sa.Index("ix_deals_search_vector", "search_vector", postgresql_using="gin"),
        sa.Index("ix_deals_created_id", "created_at", "id"),
        # The SLA sweep reads the open deals whose customer waits, oldest wait first.
        sa.Index(
            "ix_deals_open_waiting",
            "awaiting_reply_since",
            postgresql_where=sa.text("status = 'open' AND awaiting_reply_since IS NOT NULL"),
        ),
        sa.Index("ix_deals_assignee_created", "assignee_id", "created_at", "id"),
        # The unassigned deals newest first, which every manager sees besides their own.
        sa.Index("ix_deals_unassigned_created", "created_at", "id", postgresql_where=sa.text("assignee_id IS NULL")),
        # Who sees what, covering the pipeline figures and the contacts behind the deals: a
        # manager's board and contact visibility read two ranges of it (their own deals and
        # the unassigned ones), the admin's board the whole of it, never the table.
        sa.Index(
            "ix_deals_visibility",
            "assignee_id",
            "status",
            "stage_id",
            postgresql_include=["amount", "contact_id"],
        ),
        sa.Index("ix_deals_stage_created", "stage_id", "created_at", "id"),
        # The deal list sorts by last message or amount with missing values as the smallest;
        # these are the very expressions it orders and pages by, so one index serves both
        # directions and every page is an index range, however deep.
        sa.Index("ix_deals_last_message_sort", sa.text("coalesce(last_message_at, '-infinity'::timestamptz)"), "id"),
        sa.Index("ix_deals_amount_sort", sa.text("coalesce(amount, '-Infinity'::numeric)"), "id"),
        # A manager's "awaiting reply" inbox, newest message first: their own waiting deals
        # (a range of the first index) and the unassigned ones (the second: "assignee_id IS
        # NULL" cannot use the order of the first).
        sa.Index(
            "ix_deals_waiting_assignee_last_message",
            "assignee_id",
            sa.text("coalesce(last_message_at, '-infinity'::timestamptz)"),
            "id",
            postgresql_where=sa.text("status = 'open' AND awaiting_reply_since IS NOT NULL"),
        ),
        sa.Index(
            "ix_deals_waiting_unassigned_last_message",
            sa.text("coalesce(last_message_at, '-infinity'::timestamptz)"),
            "id",
            postgresql_where=sa.text("status = 'open' AND awaiting_reply_since IS NOT NULL AND assignee_id IS NULL"),
        ),
        sa.CheckConstraint("status IN ('open', 'won', 'lost')", name="ck_deals_status"),
        # Each manager's AI score over a period: the scored deals by analysis time.
        sa.Index(
            "ix_deals_ai_scored",
            "ai_analyzed_at",
            postgresql_include=["assignee_id", "ai_score"],
            postgresql_where=sa.text("ai_score IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversations.id", index=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    channel_id: int = Field(foreign_key="channels.id")
    platform: str = Field(max_length=20)
    stage_id: int = Field(foreign_key="stages.id")
    status: str = Field(default="open", max_length=10)
    lost_reason: str | None = Field(default=None, max_length=500)
    amount: Decimal | None = Field(default=None, sa_type=sa.Numeric(14, 2))
    comment: str | None = None
    assignee_id: int | None = Field(default=None, foreign_key="users.id")
    lead_source: str | None = Field(default=None, max_length=50, description="organic | ads | shortlink | ...")
    referral: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    # AI analysis (written by the ai service's events)
    ai_summary: str | None = None
    ai_intent: str | None = Field(default=None, max_length=50)
    ai_temperature: str | None = Field(default=None, max_length=10)
    ai_score: int | None = None
    ai_source: str | None = Field(default=None, max_length=20, description="gemini | heuristic")
    ai_analyzed_at: datetime | None = _ts(default=None)
    ai_version: int | None = Field(default=None, description="messages in the transcript the analysis covered")
    ai_next_action: str | None = Field(default=None, max_length=500)
    ai_language: str | None = Field(default=None, max_length=12, description="ISO 639-1 code, e.g. 'ru'")
    ai_manager_notes: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    ai_model: str | None = Field(default=None, max_length=100, description="the Gemini model; null for the heuristic")
    ai_analysis_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    # Response tracking
    awaiting_reply_since: datetime | None = _ts(default=None, index=True)
    sla_breach_since: datetime | None = _ts(
        default=None, description="the waiting episode (awaiting_reply_since) crm.deal.sla_breached announced"
    )
    sla_escalation_since: datetime | None = _ts(
        default=None, description="the waiting episode escalated to the admins (twice the SLA)"
    )
    first_response_seconds: int | None = None
    first_response_at: datetime | None = _ts(default=None)
    manager_read_at: datetime | None = _ts(
        default=None,
        description="a manager read the conversation up to this customer message (its sent_at); shared by the team",
    )
    last_message_text: str | None = None
    last_message_at: datetime | None = _ts(default=None)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)
    closed_at: datetime | None = _ts(default=None)
    search_vector: str | None = Field(default=None, sa_type=TSVECTOR)


class DealTotal(SQLModel, table=True):
    """Count and summed amount of the deals per stage and status, kept by triggers on
    ``deals`` (migration 0003), so the admin's pipeline board reads a few rows instead of
    every deal. Each (stage, status) is spread over a few ``bucket`` rows, chosen by the
    writing transaction, so concurrent writers rarely wait for each other's row."""

    __tablename__ = "deal_totals"

    stage_id: int = Field(primary_key=True)
    status: str = Field(primary_key=True, max_length=10)
    bucket: int = Field(primary_key=True, sa_type=sa.SmallInteger)
    deals: int = Field(default=0, sa_type=sa.BigInteger)
    amount: Decimal = Field(default=Decimal(0), sa_type=sa.Numeric)


class Message(SQLModel, table=True):
    """One message in a conversation, from the customer (in) or from us (out)."""

    __tablename__ = "messages"
    __table_args__ = (
        sa.Index("uq_messages_mid", "mid", unique=True, postgresql_where=sa.text("mid IS NOT NULL")),
        sa.Index(
            "uq_messages_idempotency",
            "deal_id",
            "idempotency_key",
            unique=True,
            postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        ),
        sa.Index("ix_messages_conversation_sent", "conversation_id", "sent_at", "id"),
        sa.Index("ix_messages_deal_sent", "deal_id", "sent_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversations.id")
    deal_id: int = Field(foreign_key="deals.id")
    mid: str | None = Field(default=None, max_length=300, description="Meta message id")
    direction: str = Field(max_length=3, description="in | out")
    kind: str = Field(max_length=30, description="text | image | ... | postback | referral")
    text: str | None = None
    attachments: list[dict[str, Any]] = _json(list)
    quick_reply_payload: str | None = None
    postback_payload: str | None = None
    reply_to_mid: str | None = Field(default=None, max_length=300)
    reply_to_story: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    reactions: dict[str, Any] = _json(dict)
    # Per reactor, the newest reaction event applied: a late, older react or unreact
    # must not undo a newer one (Meta does not keep order).
    reaction_clock: dict[str, Any] = _json(dict)
    is_edited: bool = False
    edit_count: int = 0
    is_deleted: bool = False
    status: str = Field(default="received", max_length=20, description="received | queued | sent | failed")
    delivered_at: datetime | None = _ts(default=None)
    read_at: datetime | None = _ts(default=None)
    sent_at: datetime = _ts(default_factory=utcnow, description="when it was written (Meta timestamp)")
    created_at: datetime = _ts(default_factory=utcnow)
    author_user_id: int | None = Field(default=None, foreign_key="users.id")
    author_label: str | None = Field(default=None, max_length=100, description="e.g. 'Meta inbox' for echoes")
    app_id: str | None = Field(default=None, max_length=64)
    idempotency_key: str | None = Field(default=None, max_length=200)
    messaging_type: str | None = Field(default=None, max_length=30)
    error_code: int | None = None
    error_message: str | None = None
    response_seconds: int | None = Field(default=None, description="for replies: time since the customer waited")
    # Replies written in the CRM: how the Send API was (or is being) asked to deliver them.
    tag: str | None = Field(default=None, max_length=30, description="message tag, e.g. HUMAN_AGENT")
    error_subcode: int | None = Field(default=None, description="Meta's error_subcode of a failed reply")
    send_attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"}, description="Send API calls made")
    send_started_at: datetime | None = _ts(
        default=None, description="when the latest Send API call began (matches an echo that beats its answer)"
    )


class PendingUpdate(SQLModel, table=True):
    """An update about a message that has not arrived yet (Meta does not keep order).

    Applied and deleted when the message lands, so nothing is lost to ordering.
    """

    __tablename__ = "pending_updates"
    __table_args__ = (sa.UniqueConstraint("dedupe_key", name="uq_pending_updates_dedupe_key"),)

    id: int | None = Field(default=None, primary_key=True)
    mid: str = Field(max_length=300, index=True)
    kind: str = Field(max_length=20, description="reaction | edit | delete | read | delivery")
    dedupe_key: str = Field(max_length=500)
    payload: dict[str, Any] = _json(dict)
    occurred_at: datetime = _ts()


class Receipt(SQLModel, table=True):
    """A read or delivery receipt: what we sent until ``watermark`` reached the customer at ``occurred_at``.

    Kept (not just folded into the conversation's watermark) so a message that arrives
    after its receipt still gets the right read or delivered time.
    """

    __tablename__ = "receipts"
    __table_args__ = (
        sa.UniqueConstraint("conversation_id", "kind", "watermark", "occurred_at", name="uq_receipts_natural_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversations.id")
    kind: str = Field(max_length=10, description="read | delivery")
    watermark: datetime = _ts(description="every message sent at or before this time is covered")
    occurred_at: datetime = _ts(description="when the customer's device reported it (Meta timestamp)")


class Activity(SQLModel, table=True):
    """The timeline of a deal: created, stage moves, assignments, replies, AI results."""

    __tablename__ = "activities"
    __table_args__ = (sa.Index("ix_activities_deal_created", "deal_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    deal_id: int = Field(foreign_key="deals.id")
    kind: str = Field(max_length=50)
    actor_user_id: int | None = Field(default=None, foreign_key="users.id")
    actor_label: str | None = Field(default=None, max_length=100)
    data: dict[str, Any] = _json(dict)
    created_at: datetime = _ts(default_factory=utcnow)


DEFAULT_STAGES: tuple[tuple[str, str], ...] = (
    ("new", "New"),
    ("contacted", "Contacted"),
    ("qualified", "Qualified"),
    ("proposal", "Proposal"),
    ("negotiation", "Negotiation"),
)
"""Stages seeded by the first migration; admins edit them afterwards."""


class OutboxEvent(SQLModel, table=True):
    """An event written in the same transaction as the change it announces.

    Published right after commit; the relay republishes whatever a crash left behind, and
    the event id (``Nats-Msg-Id``) makes a second publish harmless.
    """

    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_unpublished", "id", postgresql_where=sa.text("published_at IS NULL")),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=100, sa_column_kwargs={"unique": True})
    subject: str = Field(max_length=200)
    payload: str
    correlation_id: str | None = Field(default=None, max_length=128)
    created_at: datetime = _ts(default_factory=utcnow)
    published_at: datetime | None = _ts(default=None)


# ------------------------------------------------------------------ administration
# Runtime settings, the audit log of their changes, the system log of integration
# failures, deal tasks and Telegram link codes.


class Setting(SQLModel, table=True):
    """A runtime setting an admin overrode; without a row the environment's default applies.

    Secret values are sealed (``SecretBox`` with the ``settings`` purpose), so a database
    dump never shows a plaintext token.
    """

    __tablename__ = "settings"

    key: str = Field(primary_key=True, max_length=100)
    value: str = Field(description="the value, or for secrets its sealed form")
    is_secret: bool
    updated_at: datetime = _ts(default_factory=utcnow)
    updated_by_id: int | None = Field(default=None, foreign_key="users.id")
    updated_by_email: str | None = Field(default=None, max_length=320)


class AuditLogEntry(SQLModel, table=True):
    """Who changed which setting, from what to what (secrets masked), when and from where."""

    __tablename__ = "audit_log"
    __table_args__ = (
        sa.Index("ix_audit_log_occurred", "occurred_at", "id"),
        sa.Index("ix_audit_log_key_occurred", "key", "occurred_at", "id"),
        sa.Index("ix_audit_log_actor_occurred", "actor_user_id", "occurred_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    occurred_at: datetime = _ts(default_factory=utcnow)
    actor_user_id: int | None = Field(default=None, foreign_key="users.id")
    actor_email: str | None = Field(default=None, max_length=320)
    action: str = Field(max_length=50, description="setting.set | setting.reset")
    key: str = Field(max_length=100)
    old_value: str | None = Field(default=None, description="masked for secrets")
    new_value: str | None = Field(default=None, description="masked for secrets")
    client_address: str | None = Field(default=None, max_length=100)
    details: dict[str, Any] = _json(dict)


class SystemLogEntry(SQLModel, table=True):
    """An integration failure or a dead letter, for admins to read.

    ``dedupe_key`` makes recording idempotent (a dead letter's id, for instance).
    """

    __tablename__ = "system_log"
    __table_args__ = (
        sa.Index("ix_system_log_occurred", "occurred_at", "id"),
        sa.Index("ix_system_log_kind_occurred", "kind", "occurred_at", "id"),
        sa.Index(
            "uq_system_log_dedupe_key", "dedupe_key", unique=True, postgresql_where=sa.text("dedupe_key IS NOT NULL")
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    occurred_at: datetime = _ts(default_factory=utcnow)
    recorded_at: datetime = _ts(default_factory=utcnow)
    kind: str = Field(max_length=30, description="dead_letter | integration_failure")
    source: str = Field(max_length=100, description="the failing service or integration, e.g. 'ingest', 'meta.send'")
    subject: str | None = Field(default=None, max_length=300, description="the NATS subject, for dead letters")
    message: str
    deliveries: int | None = None
    dedupe_key: str | None = Field(default=None, max_length=300)
    details: dict[str, Any] = _json(dict)


class Task(SQLModel, table=True):
    """A to-do on a deal, with a due time and the user who should do it."""

    __tablename__ = "tasks"
    __table_args__ = (
        sa.Index("ix_tasks_deal", "deal_id", "id"),
        # The due-task sweep reads only what is still open and not yet announced.
        sa.Index("ix_tasks_due_pending", "due_at", postgresql_where=sa.text("NOT done AND due_notified_at IS NULL")),
        sa.Index("ix_tasks_assignee_open", "assignee_id", "due_at", postgresql_where=sa.text("NOT done")),
    )

    id: int | None = Field(default=None, primary_key=True)
    deal_id: int = Field(foreign_key="deals.id")
    title: str = Field(max_length=500)
    due_at: datetime | None = _ts(default=None)
    assignee_id: int | None = Field(default=None, foreign_key="users.id")
    created_by_id: int | None = Field(default=None, foreign_key="users.id")
    done: bool = False
    done_at: datetime | None = _ts(default=None)
    done_by_id: int | None = Field(default=None, foreign_key="users.id")
    due_notified_at: datetime | None = _ts(default=None, description="when crm.task.due went out for this due time")
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class TelegramLinkCode(SQLModel, table=True):
    """A one-time code a user sends the bot (``/start <code>``) to link their Telegram.

    Only the code's hash is kept; the notifier matches the hash it received in the event.
    """

    __tablename__ = "telegram_link_codes"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    code_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    created_at: datetime = _ts(default_factory=utcnow)
    expires_at: datetime = _ts()


# Statistics read replies, first responses and closings by time range.
sa.Index(
    "ix_messages_out_sent",
    Message.__table__.c.sent_at,  # type: ignore[attr-defined]
    postgresql_where=sa.text("direction = 'out'"),
)
# Replies still waiting for the Send API, per conversation: the echo matcher and the
# sender look only at these.
sa.Index(
    "ix_messages_queued",
    Message.__table__.c.conversation_id,  # type: ignore[attr-defined]
    postgresql_where=sa.text("status = 'queued'"),
)
sa.Index(
    "ix_deals_closed_at",
    Deal.__table__.c.closed_at,  # type: ignore[attr-defined]
    postgresql_where=sa.text("closed_at IS NOT NULL"),
)
sa.Index(
    "ix_deals_first_response_at",
    Deal.__table__.c.first_response_at,  # type: ignore[attr-defined]
    postgresql_where=sa.text("first_response_at IS NOT NULL"),
)


class ScheduledJob(SQLModel, table=True):
    """A scheduler job as the scheduler last announced it (``scheduler.job.updated``): the
    admins' ``/api/jobs`` reads it. The highest revision wins, whatever the delivery order."""

    __tablename__ = "scheduled_jobs"

    name: str = Field(primary_key=True, max_length=40)
    revision: int
    state: dict[str, Any] = Field(sa_type=JSONB, description="the announced JobUpdatedData")
    received_at: datetime = _ts(default_factory=utcnow)
