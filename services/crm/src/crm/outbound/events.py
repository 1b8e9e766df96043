"""The events of replies, staged in the outbox with ids derived from what they announce.

A sent reply is announced by :func:`crm.conversation.replies.stage_sent` (the inbound
consumer may notice it first, on its echo); a second staging of the same event is a
no-op and JetStream's dedupe window drops a second publish.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from crm.conversation.replies import PRODUCER, about
from crm.conversation.repository import load_message, read_deal
from crm.deals.events import row_key
from crm.models import Channel, Message
from jggl_common.contracts import (
    ChannelNeedsReauth,
    ChannelNeedsReauthData,
    MessageFailed,
    MessageFailedData,
    SendRequested,
    SendRequestedData,
    stable_event_id,
    utcnow,
)
from jggl_common.contracts.outbound import FailureReason
from jggl_common.outbox import stage

__all__ = ["PRODUCER", "stage_failed", "stage_needs_reauth", "stage_send_requested"]


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


async def stage_failed(session: AsyncSession, message_id: int, reason: FailureReason, correlation: str | None) -> str:
    """Announce a reply that will not reach the customer (the author is told by the notifier)."""
    message = await load_message(session, message_id)
    assert message is not None  # the caller holds it
    deal, contact, stage_key = await read_deal(session, message.deal_id)
    return await stage(
        session,
        MessageFailed(
            id=stable_event_id(f"crm.message.failed:{row_key(message_id, message.created_at)}"),
            producer=PRODUCER,
            correlation_id=correlation,
            data=MessageFailedData(
                **about(message, deal, contact, stage_key),
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
                platform=channel.platform,
                external_id=channel.external_id,
                channel_name=channel.name,
                error_code=code,
                error_subcode=subcode,
                error_message=error,
            ),
        ),
    )
