"""The page's replies as the conversation sees them: recognising our own replies in
Meta's echoes, and announcing a reply that reached the customer.

Meta echoes every message a page sends, ours included. An echo that arrives after the
Send API answered carries a ``mid`` we already stored: the inbound consumer skips it.
One that beats the answer (Meta does not order the two) is matched here instead: same
app (``message.app_id`` is our ``META_APP_ID``), same conversation (so the same
recipient), the reply whose Send API call is in flight with the same content. That
reply becomes ``sent`` with the echo's ``mid`` and time, and the answer, when it comes,
finds the work done. Echoes from Meta's own apps (another ``app_id``) are replies typed
in the Page inbox or the Instagram app and are stored as such ("Meta inbox").

A sent reply is announced once whoever notices first (the sender on Meta's answer, or
the inbound consumer on its echo) stages it: both derive the same event id from the
row, so the second staging is a no-op.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm.conversation.repository import load_message, read_deal
from crm.deals.events import ContactLike, DealLike, contact_ref, row_key
from crm.models import Message
from jggl_common.contracts import MessageSent, MessageSentData, stable_event_id
from jggl_common.db import driver_connection
from jggl_common.outbox import stage

__all__ = ["MATCH_WINDOW", "PRODUCER", "about", "claim_own_echo", "in_flight_echo_match", "stage_sent"]

PRODUCER = "crm"

MATCH_WINDOW = timedelta(minutes=2)
"""How far apart our Send API call and the echo's timestamp may be (clock skew, slow answers)."""


async def in_flight_echo_match(
    session: AsyncSession,
    conversation_id: int,
    *,
    text_: str | None,
    attachment_type: str | None,
    at: datetime,
    window: timedelta = MATCH_WINDOW,
) -> int | None:
    """Our queued reply that an echo written at ``at`` is the copy of, if there is one.

    Candidates: replies of this conversation whose Send API call began within ``window``
    of ``at`` (Meta's clock against ours), still without Meta's id, with the same text,
    or the same attachment type when the echo carries a file. The sender delivers one
    reply per conversation at a time, so at most one is really in flight; the latest
    attempt wins if an earlier one is still waiting for its retry.
    """
    # The same text, or no text and the same attachment type.
    found = await (await driver_connection(session)).fetchval(
        "SELECT id FROM messages WHERE conversation_id = $1 AND status = 'queued' AND direction = 'out'"
        " AND mid IS NULL AND send_started_at BETWEEN $2::timestamptz - $3::interval AND $2::timestamptz + $3::interval"
        " AND (CASE WHEN $4::text IS NOT NULL THEN text = $4::text ELSE text IS NULL AND kind = $5::text END)"
        " ORDER BY send_started_at DESC, id DESC LIMIT 1 FOR UPDATE",
        conversation_id,
        at,
        window,
        text_,
        attachment_type or "",
    )
    return int(found) if found is not None else None


async def claim_own_echo(
    session: AsyncSession,
    conversation_id: int,
    *,
    mid: str,
    text: str | None,
    attachments: list[dict[str, Any]],
    app_id: str | None,
    our_app_id: str | None,
    at: datetime,
) -> tuple[int, int] | None:
    """``(message id, deal id)`` of our in-flight reply this echo copies, now marked sent.

    The caller holds the conversation's lock. Without a configured ``META_APP_ID`` the
    content alone decides (a Page inbox reply identical to an in-flight one, in the same
    second, is the only thing that could be mistaken for ours).
    """
    if our_app_id and app_id != our_app_id:
        return None
    attachment_type = str(attachments[0].get("type")) if attachments else None
    if text is None and attachment_type is None:
        return None
    found = await in_flight_echo_match(session, conversation_id, text_=text, attachment_type=attachment_type, at=at)
    if found is None:
        return None
    deal_id = await (await driver_connection(session)).fetchval(
        "UPDATE messages SET status = 'sent', mid = $2, sent_at = $3, app_id = $4, error_code = NULL,"
        " error_message = NULL WHERE id = $1 RETURNING deal_id",
        found,
        mid,
        at,
        app_id,
    )
    return found, int(deal_id)


def about(message: Message, deal: DealLike, contact: ContactLike, stage_key: str) -> dict[str, Any]:
    """What every event about a reply carries: the message, its deal and the customer."""
    return {
        "message_id": message.id,
        "deal_id": message.deal_id,
        "conversation_id": message.conversation_id,
        "kind": message.kind,
        "text": message.text,
        "author_user_id": message.author_user_id,
        "deal_stage": stage_key,
        "assignee_id": deal.assignee_id,
        "contact": contact_ref(contact),
    }


async def stage_sent(session: AsyncSession, message_id: int, correlation: str | None) -> str | None:
    """Announce a reply that reached the customer (ours or one written in Meta's apps) as
    ``crm.message.sent``; the id is the same whoever stages it. ``None``: nothing to
    announce (not sent, unsent since, or gone)."""
    message = await load_message(session, message_id)
    if message is None or message.mid is None or message.status != "sent" or message.is_deleted:
        return None
    deal, contact, stage_key = await read_deal(session, message.deal_id)
    return await stage(
        session,
        MessageSent(
            id=stable_event_id(f"crm.message.sent:{row_key(message_id, message.created_at)}"),
            producer=PRODUCER,
            correlation_id=correlation,
            data=MessageSentData(
                **about(message, deal, contact, stage_key),
                mid=message.mid,
                attachments=list(message.attachments),
                sent_at=message.sent_at,
                messaging_type=message.messaging_type,
                tag=message.tag,
                author_label=message.author_label,
                response_seconds=message.response_seconds,
            ),
        ),
    )
