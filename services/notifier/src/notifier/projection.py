"""The notifier's own picture of crm's deals, built from events (no service reads another's
schema): who the deal is with, its stage and assignee, when the customer last wrote and
what, when we last answered, and the AI's summary. ``/deals``, ``/stats``, the buttons
and the notifications read it.

Every statement gives the same row whatever the order or repetition of the events, and a
row may be begun by any of them:

* a deal snapshot (``crm.deal.created``, ``crm.deal.updated``, and ``crm.message.received``,
  which carries the deal's stage, assignee and contact as of that message and implies an
  open deal) replaces the descriptive fields only when its ``occurred_at`` is newer than
  the snapshot applied;
* the customer's name is the newest by ``occurred_at`` of every event that names them:
  the snapshots, a reply, and ``crm.contact.updated`` (crm read the customer's Meta
  profile, or someone edited it), which names the contact's open deals; an older event
  never overwrites it (``contact_at``);
* ``last_customer_at`` and ``last_reply_at`` only move forward (``GREATEST``), and the
  customer's text is the newest message's;
* a reply (``crm.message.sent``) is also one row of ``replies``, by crm's message id;
* an analysis (``ai.analysis.completed``) replaces the summary when it covers a newer
  transcript version, or the same version from Gemini (which outranks the heuristic).

A deal awaits a reply while the customer's newest message is newer than our newest
reply: :data:`AWAITING_REPLY`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jggl_common.bus import PermanentFailure
from jggl_common.contracts import (
    AnalysisCompleted,
    ContactUpdated,
    DealCreated,
    DealUpdated,
    Envelope,
    MessageReceived,
    MessageSent,
)
from jggl_common.db import autocommit, driver_connection, session_scope
from notifier.notification_texts import contact_name, plain_preview

__all__ = ["AWAITING_REPLY", "DEAL_EVENTS", "ContactName", "DealView", "MyFigures", "Projection", "WaitingDeals"]

AWAITING_REPLY = "last_customer_at > COALESCE(last_reply_at, '-infinity'::timestamptz)"
"""The one definition of "awaits a reply", as a condition on a ``deals`` row."""

DEAL_EVENTS: dict[str, type[Envelope]] = {
    contract.subject: contract for contract in (DealCreated, DealUpdated, MessageReceived, MessageSent)
}
"""The CRM events the projection applies, by their ``type`` (which is their subject)."""

_SNAPSHOT = """
INSERT INTO deals AS d (deal_id, conversation_id, assignee_id, status, stage, platform, contact_name, snapshot_at,
                        contact_at, last_customer_at, last_customer_text)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10)
ON CONFLICT (deal_id) DO UPDATE SET
    conversation_id = CASE WHEN d.snapshot_at IS NULL OR d.snapshot_at < EXCLUDED.snapshot_at
                           THEN EXCLUDED.conversation_id ELSE d.conversation_id END,
    assignee_id = CASE WHEN d.snapshot_at IS NULL OR d.snapshot_at < EXCLUDED.snapshot_at
                       THEN EXCLUDED.assignee_id ELSE d.assignee_id END,
    status = CASE WHEN d.snapshot_at IS NULL OR d.snapshot_at < EXCLUDED.snapshot_at
                  THEN EXCLUDED.status ELSE d.status END,
    stage = CASE WHEN d.snapshot_at IS NULL OR d.snapshot_at < EXCLUDED.snapshot_at
                 THEN EXCLUDED.stage ELSE d.stage END,
    platform = CASE WHEN d.snapshot_at IS NULL OR d.snapshot_at < EXCLUDED.snapshot_at
                    THEN EXCLUDED.platform ELSE d.platform END,
    contact_name = CASE WHEN d.contact_at IS NULL OR d.contact_at < EXCLUDED.contact_at
                        THEN EXCLUDED.contact_name ELSE d.contact_name END,
    contact_at = GREATEST(d.contact_at, EXCLUDED.contact_at),
    snapshot_at = GREATEST(d.snapshot_at, EXCLUDED.snapshot_at),
    last_customer_text = CASE WHEN EXCLUDED.last_customer_at IS NOT NULL
                                   AND (d.last_customer_at IS NULL OR d.last_customer_at <= EXCLUDED.last_customer_at)
                              THEN EXCLUDED.last_customer_text ELSE d.last_customer_text END,
    last_customer_at = GREATEST(d.last_customer_at, EXCLUDED.last_customer_at)
"""

_REPLY = """
INSERT INTO deals AS d (deal_id, conversation_id, platform, contact_name, contact_at, last_reply_at)
VALUES ($1, $2, $3, $4, $6, $5)
ON CONFLICT (deal_id) DO UPDATE SET
    conversation_id = COALESCE(d.conversation_id, EXCLUDED.conversation_id),
    platform = COALESCE(d.platform, EXCLUDED.platform),
    contact_name = CASE WHEN d.contact_at IS NULL OR d.contact_at < EXCLUDED.contact_at
                        THEN EXCLUDED.contact_name ELSE d.contact_name END,
    contact_at = GREATEST(d.contact_at, EXCLUDED.contact_at),
    last_reply_at = GREATEST(d.last_reply_at, EXCLUDED.last_reply_at)
"""

_CONTACT = """
INSERT INTO deals AS d (deal_id, platform, contact_name, contact_at)
SELECT deal_id, $2, $3, $4 FROM unnest($1::bigint[]) AS deal_id
ON CONFLICT (deal_id) DO UPDATE SET
    platform = COALESCE(d.platform, EXCLUDED.platform),
    contact_name = CASE WHEN d.contact_at IS NULL OR d.contact_at < EXCLUDED.contact_at
                        THEN EXCLUDED.contact_name ELSE d.contact_name END,
    contact_at = GREATEST(d.contact_at, EXCLUDED.contact_at)
"""

_ANALYSIS = """
INSERT INTO deals AS d (deal_id, conversation_id, ai_version, ai_summary, ai_intent, ai_temperature)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (deal_id) DO UPDATE SET
    conversation_id = COALESCE(d.conversation_id, EXCLUDED.conversation_id),
    ai_summary = CASE WHEN d.ai_version IS NULL OR d.ai_version < EXCLUDED.ai_version OR (d.ai_version = EXCLUDED.ai_version AND $7)
                      THEN EXCLUDED.ai_summary ELSE d.ai_summary END,
    ai_intent = CASE WHEN d.ai_version IS NULL OR d.ai_version < EXCLUDED.ai_version OR (d.ai_version = EXCLUDED.ai_version AND $7)
                     THEN EXCLUDED.ai_intent ELSE d.ai_intent END,
    ai_temperature = CASE WHEN d.ai_version IS NULL OR d.ai_version < EXCLUDED.ai_version OR (d.ai_version = EXCLUDED.ai_version AND $7)
                          THEN EXCLUDED.ai_temperature ELSE d.ai_temperature END,
    ai_version = GREATEST(d.ai_version, EXCLUDED.ai_version)
"""  # noqa: E501

_VIEW = (
    "deal_id, assignee_id, status, stage, platform, contact_name, last_customer_at, last_customer_text, "
    "last_reply_at, ai_summary"
)


@dataclass(frozen=True, slots=True)
class DealView:
    """A deal as the projection has it (fields unknown until an event told them are None)."""

    deal_id: int
    assignee_id: int | None
    status: str | None
    stage: str | None
    platform: str | None
    contact_name: str | None
    last_customer_at: datetime | None
    last_customer_text: str | None
    last_reply_at: datetime | None
    ai_summary: str | None


@dataclass(frozen=True, slots=True)
class ContactName:
    """The customer's name on a deal, as a notification shows it, and the ``occurred_at``
    of the event it came from (a name from a newer event replaces it)."""

    name: str
    at: datetime


@dataclass(frozen=True, slots=True)
class WaitingDeals:
    """``/deals``: a manager's open deals awaiting a reply, longest waiting first, and how
    many unassigned ones await a reply."""

    mine: list[DealView]
    unassigned: int


@dataclass(frozen=True, slots=True)
class MyFigures:
    """``/stats``: a manager's figures for a business day."""

    replies: int
    median_response_seconds: float | None
    open_deals: int
    awaiting_reply: int


def parse(contract: type[Envelope], body: Any) -> Any:
    """``body`` as ``contract``; a malformed one is a permanent failure (the DLQ, not retries)."""
    try:
        return contract.model_validate(body)
    except ValidationError as exc:
        raise PermanentFailure(f"malformed {contract.subject}: {exc}") from exc


class Projection:
    """The ``deals`` and ``replies`` rows, over the notifier's session factory."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    # ------------------------------------------------------------------ applying events

    async def apply(self, event: Envelope) -> None:
        """Apply one CRM or AI event (others are not the projection's and change nothing)."""
        if isinstance(event, DealCreated):
            await self._snapshot(event.data.id, event.occurred_at, event.data.conversation_id, event.data)
        elif isinstance(event, DealUpdated):
            deal = event.data.deal
            await self._snapshot(deal.id, event.occurred_at, deal.conversation_id, deal)
        elif isinstance(event, MessageReceived):
            await self._received(event)
        elif isinstance(event, MessageSent):
            await self._sent(event)
        elif isinstance(event, AnalysisCompleted):
            await self._analysed(event)
        elif isinstance(event, ContactUpdated):
            await self._contact(event)

    async def apply_body(self, body: dict[str, Any]) -> None:
        """Apply a CRM event as it came off the bus, when its type is one the projection keeps."""
        contract = DEAL_EVENTS.get(str(body.get("type"))) if isinstance(body, dict) else None
        if contract is not None:
            await self.apply(parse(contract, body))

    async def _snapshot(self, deal_id: int, at: datetime, conversation_id: int, deal: Any) -> None:
        async with autocommit(self.sessions) as db:
            await db.execute(
                _SNAPSHOT,
                deal_id,
                conversation_id,
                deal.assignee_id,
                deal.status,
                deal.stage,
                deal.platform,
                contact_name(deal.contact),
                at,
                None,
                None,
            )

    async def _received(self, event: MessageReceived) -> None:
        data = event.data
        async with autocommit(self.sessions) as db:
            await db.execute(
                _SNAPSHOT,
                data.deal_id,
                data.conversation_id,
                data.assignee_id,
                "open",  # a customer writing after a deal closed opens a new deal
                data.deal_stage,
                data.contact.platform,
                contact_name(data.contact),
                event.occurred_at,
                data.sent_at,
                plain_preview(data.text, data.attachments, data.kind),
            )

    async def _sent(self, event: MessageSent) -> None:
        data = event.data
        async with session_scope(self.sessions) as session:
            db = await driver_connection(session)
            await db.execute(
                _REPLY,
                data.deal_id,
                data.conversation_id,
                data.contact.platform,
                contact_name(data.contact),
                data.sent_at,
                event.occurred_at,
            )
            await db.execute(
                "INSERT INTO replies (message_id, user_id, deal_id, sent_at, response_seconds)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (message_id) DO NOTHING",
                data.message_id,
                data.author_user_id,
                data.deal_id,
                data.sent_at,
                data.response_seconds,
            )

    async def _contact(self, event: ContactUpdated) -> None:
        data = event.data
        if not data.open_deals:
            return
        async with autocommit(self.sessions) as db:
            await db.execute(
                _CONTACT,
                sorted({deal.id for deal in data.open_deals}),
                data.contact.platform,
                contact_name(data.contact),
                event.occurred_at,
            )

    async def _analysed(self, event: AnalysisCompleted) -> None:
        data = event.data
        async with autocommit(self.sessions) as db:
            await db.execute(
                _ANALYSIS,
                data.deal_id,
                data.conversation_id,
                data.version,
                data.result.summary,
                data.result.intent,
                data.result.temperature,
                data.provider == "gemini",
            )

    # ------------------------------------------------------------------ reading

    async def deal(self, deal_id: int) -> DealView | None:
        """The deal as known, None when no event about it arrived yet."""
        async with autocommit(self.sessions) as db:
            row = await db.fetchrow(f"SELECT {_VIEW} FROM deals WHERE deal_id = $1", deal_id)
        return DealView(**dict(row)) if row else None

    async def newer_name(self, deal_id: int, than: datetime) -> ContactName | None:
        """The customer's name on the deal when it came from an event newer than ``than``
        (None: the projection knows no newer one)."""
        async with autocommit(self.sessions) as db:
            row = await db.fetchrow(
                "SELECT contact_name, contact_at FROM deals WHERE deal_id = $1 AND contact_at > $2"
                " AND contact_name IS NOT NULL",
                deal_id,
                than,
            )
        return ContactName(row["contact_name"], row["contact_at"]) if row else None

    async def summary(self, deal_id: int) -> str | None:
        """The AI's newest summary of the deal, if any."""
        async with autocommit(self.sessions) as db:
            value = await db.fetchval("SELECT ai_summary FROM deals WHERE deal_id = $1", deal_id)
        return None if value is None else str(value)

    async def waiting(self, user_id: int, limit: int = 10) -> WaitingDeals:
        """The user's open deals awaiting a reply (longest waiting first, at most ``limit``)
        and the count of unassigned open deals awaiting one."""
        async with autocommit(self.sessions) as db:
            rows = await db.fetch(
                f"SELECT {_VIEW} FROM deals WHERE assignee_id = $1 AND status = 'open' AND {AWAITING_REPLY}"
                " ORDER BY last_customer_at, deal_id LIMIT $2",
                user_id,
                limit,
            )
            unassigned = await db.fetchval(
                f"SELECT count(*) FROM deals WHERE assignee_id IS NULL AND status = 'open' AND {AWAITING_REPLY}"
            )
        return WaitingDeals([DealView(**dict(row)) for row in rows], int(unassigned))

    async def figures(self, user_id: int, day_start: datetime, day_end: datetime) -> MyFigures:
        """The user's replies and median response time between ``day_start`` and
        ``day_end``, and their open deals and those awaiting a reply now."""
        async with autocommit(self.sessions) as db:
            replies = await db.fetchrow(
                "SELECT count(*) AS replies,"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY response_seconds) AS median"
                " FROM replies WHERE user_id = $1 AND sent_at >= $2 AND sent_at < $3",
                user_id,
                day_start,
                day_end,
            )
            deals = await db.fetchrow(
                f"SELECT count(*) AS open, count(*) FILTER (WHERE {AWAITING_REPLY}) AS awaiting"
                " FROM deals WHERE assignee_id = $1 AND status = 'open'",
                user_id,
            )
        assert replies is not None
        assert deals is not None
        median = replies["median"]
        return MyFigures(
            replies=int(replies["replies"]),
            median_response_seconds=None if median is None else float(median),
            open_deals=int(deals["open"]),
            awaiting_reply=int(deals["awaiting"]),
        )
