"""Accepting a reply: permissions, the messaging window, idempotency. Never commits.

The same function serves the HTTP API and the ``crm.cmd.send_message`` command, so a
reply from Telegram obeys exactly the rules of one typed in the CRM. An accepted reply is
stored ``queued`` and a ``crm.outbound.send_requested`` event is staged with it in the
same transaction: the sender consumes it durably, so a restart loses no reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from crm.config import CrmSettings
from crm.conversation.repository import load_message, lock_conversation, recompute_deal
from crm.deals.repository import DealRepository
from crm.models import Channel, Message, User
from crm.web.errors import Conflict, NotFound
from jggl_common.contracts import utcnow
from jggl_common.logs import correlation_id

from . import events
from . import repository as repo
from .schemas import ReplyIn
from .window import WindowClosed, decide, human_agent_enabled

__all__ = ["Submitted", "submit_reply"]

_NOT_FOUND = "Deal not found"
_KEY_REUSED = "This idempotency_key was already used on this deal for a different reply; use a new key per reply."
_CHANNEL_OFF = "This page is disconnected from the CRM; an admin must reconnect it before replies can be sent."


@dataclass
class Submitted:
    """The reply, whether this call created it, and the ids of the events it staged."""

    message: Message
    created: bool
    event_ids: list[str] = field(default_factory=list)


def _same_reply(message: Message, reply: ReplyIn) -> bool:
    return message.text == reply.text and list(message.attachments) == reply.stored_attachments()


def _replay(message: Message, reply: ReplyIn) -> Submitted:
    if not _same_reply(message, reply):
        raise Conflict(_KEY_REUSED)
    return Submitted(message, created=False)


async def submit_reply(
    session: AsyncSession, settings: CrmSettings, actor: User, deal_id: int, reply: ReplyIn
) -> Submitted:
    """Queue ``reply`` on a deal ``actor`` may see.

    :class:`NotFound` for a deal the actor may not see (managers: their own and
    unassigned ones), :class:`Conflict` when Meta's window forbids a reply now or the
    idempotency key was used for another reply. A repeat of an accepted reply returns
    it unchanged (``created`` false) and sends nothing.
    """
    deals = DealRepository(session)
    row = await deals.get_visible(actor, deal_id)
    if row is None:
        raise NotFound(_NOT_FOUND)
    existing = await repo.by_idempotency_key(session, deal_id, reply.idempotency_key)
    if existing is not None:
        return _replay(existing, reply)
    conversation_id = row[0].conversation_id
    # The conversation's lock (the inbound consumer takes it too): the window is decided on
    # the customer's latest message as committed, and response tracking is recomputed
    # without racing it.
    await lock_conversation(session, conversation_id)
    row = await deals.get_visible(actor, deal_id, for_update=True)
    if row is None:  # reassigned to someone else meanwhile
        raise NotFound(_NOT_FOUND)
    deal = row[0]
    channel = await session.get(Channel, deal.channel_id)
    if channel is None or not channel.is_active:
        raise Conflict(_CHANNEL_OFF)
    now = utcnow()
    try:
        delivery = decide(
            await repo.last_inbound_at(session, conversation_id),
            now,
            human_agent=await human_agent_enabled(session, settings),
        )
    except WindowClosed as exc:
        raise Conflict(exc.detail) from None
    message_id = await repo.insert_queued(
        session,
        conversation_id=conversation_id,
        deal_id=deal_id,
        kind=reply.kind,
        text=reply.text,
        attachments=reply.stored_attachments(),
        author_user_id=actor.id,
        idempotency_key=reply.idempotency_key,
        messaging_type=delivery.messaging_type,
        tag=delivery.tag,
        sent_at=now,
        created_at=now,
    )
    if message_id is None:
        # The same key won a race a moment ago (a double click): that reply is the answer.
        existing = await repo.by_idempotency_key(session, deal_id, reply.idempotency_key)
        assert existing is not None
        return _replay(existing, reply)
    # A queued reply already answers the customer: the deal stops awaiting a reply now,
    # and starts again if the reply fails.
    await recompute_deal(session, deal_id)
    deals.add_activity(deal_id, "reply", actor, {"message_id": message_id, "messaging_type": delivery.messaging_type})
    message = await load_message(session, message_id)
    assert message is not None
    event_id = await events.stage_send_requested(session, message, correlation_id())
    return Submitted(message, created=True, event_ids=[event_id])
