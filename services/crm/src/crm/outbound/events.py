"""The events of replies, staged in the outbox with ids derived from what they announce.

A reply is announced once whoever notices first (the sender on Meta's answer, or the
inbound consumer on its echo) stages it: both derive the same event id from the row, so
the second staging is a no-op and JetStream's dedupe window drops a second publish.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm.deals.events import ContactLike, DealLike, contact_ref, row_key
from crm.inbound.repository import load_deal, load_message
from crm.models import Channel, Message
from jggl_common.contracts import (
    ChannelNeedsReauth,
    ChannelNeedsReauthData,
    MessageFailed,
    MessageFailedData,
    MessageSent,
    MessageSentData,
    SendRequested,
    SendRequestedData,
    stable_event_id,
    utcnow,
)
from jggl_common.contracts.outbound import FailureReason
from jggl_common.outbox import stage

__all__ = ["PRODUCER", "stage_failed", "stage_needs_reauth", "stage_send_requested", "stage_sent"]

PRODUCER = "crm"


async def stage_send_requested(session: AsyncSession, message: Message, correlation: str | None) -> str:
    """Queue ``message`` for the sender."""
    assert message.id is not None
    return await stage(
        session,
        SendRequested(
            id=stable_event_id(f"crm.outbound.send_requested:{row_key(message.id, message.created_at)}"),
            producer=PRODUCER,
            correlation_id=correlation,
            data=SendRequestedData(
                message_id=message.id, deal_id=message.deal_id, conversation_id=message.conversation_id
            ),
        ),
    )


def _about(message: Message, deal: DealLike, contact: ContactLike, stage_key: str) -> dict[str, Any]:
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
    """Announce a reply that reached the customer (ours or one written in Meta's apps)."""
    message = await load_message(session, message_id)
    if message.mid is None or message.status != "sent" or message.is_deleted:
        return None
    deal, contact, stage_key = await load_deal(session, message.deal_id)
    return await stage(
        session,
        MessageSent(
            id=stable_event_id(f"crm.message.sent:{row_key(message_id, message.created_at)}"),
            producer=PRODUCER,
            correlation_id=correlation,
            data=MessageSentData(
                **_about(message, deal, contact, stage_key),
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


async def stage_failed(session: AsyncSession, message_id: int, reason: FailureReason, correlation: str | None) -> str:
    """Announce a reply that will not reach the customer (the author is told by the notifier)."""
    message = await load_message(session, message_id)
    deal, contact, stage_key = await load_deal(session, message.deal_id)
    return await stage(
        session,
        MessageFailed(
            id=stable_event_id(f"crm.message.failed:{row_key(message_id, message.created_at)}"),
            producer=PRODUCER,
            correlation_id=correlation,
            data=MessageFailedData(
                **_about(message, deal, contact, stage_key),
                reason=reason,
                error_code=message.error_code,
                error_subcode=message.error_subcode,
                error_message=message.error_message or "not delivered",
                attempts=message.send_attempts,
                failed_at=utcnow(),
            ),
        ),
    )


async def stage_needs_reauth(
    session: AsyncSession,
    channel: Channel,
    *,
    code: int | None,
    subcode: int | None,
    error: str,
    cause: str,
    correlation: str | None,
) -> str:
    """Tell admins that Meta refused the channel's token (staged once per flip of the flag)."""
    assert channel.id is not None
    return await stage(
        session,
        ChannelNeedsReauth(
            id=stable_event_id(f"crm.channel.needs_reauth:{row_key(channel.id, channel.created_at)}:{cause}"),
            producer=PRODUCER,
            correlation_id=correlation,
            data=ChannelNeedsReauthData(
                channel_id=channel.id,
                platform=channel.platform,  # type: ignore[arg-type]
                external_id=channel.external_id,
                channel_name=channel.name,
                error_code=code,
                error_subcode=subcode,
                error_message=error,
            ),
        ),
    )
