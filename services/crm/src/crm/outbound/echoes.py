"""Recognising our own replies in Meta's echoes.

Meta echoes every message a page sends, ours included. An echo that arrives after the
Send API answered carries a ``mid`` we already stored: the inbound consumer skips it.
One that beats the answer (Meta does not order the two) is matched here instead: same
app (``message.app_id`` is our ``META_APP_ID``), same conversation (so the same
recipient), the reply whose Send API call is in flight with the same content. That
reply becomes ``sent`` with the echo's ``mid`` and time, and the answer, when it comes,
finds the work done. Echoes from Meta's own apps (another ``app_id``) are replies typed
in the Page inbox or the Instagram app and are stored as such ("Meta inbox").
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.inbound.repository import table
from crm.models import Message
from crm.outbound import events
from crm.outbound import repository as repo

__all__ = ["MATCH_WINDOW", "claim_own_echo", "stage_sent"]

MATCH_WINDOW = timedelta(minutes=2)
"""How far apart our Send API call and the echo's timestamp may be (clock skew, slow answers)."""

_messages = table(Message)


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
    found = await repo.in_flight_echo_match(
        session, conversation_id, text_=text, attachment_type=attachment_type, at=at, window=MATCH_WINDOW
    )
    if found is None:
        return None
    deal_id = (
        await session.execute(
            update(_messages)
            .where(_messages.c.id == found)
            .values(status="sent", mid=mid, sent_at=at, app_id=app_id, error_code=None, error_message=None)
            .returning(_messages.c.deal_id)
        )
    ).scalar_one()
    return found, int(deal_id)


async def stage_sent(session: AsyncSession, message_id: int, correlation: str | None) -> str | None:
    """Announce a sent reply (``crm.message.sent``); the id is the same whoever stages it."""
    return await events.stage_sent(session, message_id, correlation)
