"""Meta's messaging window: whether a reply may go out now, and as what.

Meta lets a page answer within 24 hours of the customer's last message (``RESPONSE``),
and a human agent up to 7 days with ``MESSAGE_TAG`` / ``HUMAN_AGENT`` when the business
has that permission, which admins state with the ``meta.human_agent`` setting. Later,
Meta refuses (code 10 / subcode 2018278): we refuse first, with a sentence the manager
can act on, and decide again at send time because a reply may wait in the queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.config import CrmSettings
from crm.models import Setting

__all__ = [
    "HUMAN_AGENT_KEY",
    "HUMAN_AGENT_WINDOW",
    "RESPONSE_WINDOW",
    "Delivery",
    "WindowClosed",
    "decide",
    "human_agent_enabled",
]

RESPONSE_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
HUMAN_AGENT_KEY = "meta.human_agent"

NEVER_WROTE = (
    "The customer has not written to this page yet; Meta allows replies only after the customer's own message."
)
NEEDS_HUMAN_AGENT = (
    "The customer last wrote more than 24 hours ago; replies are possible within 24 hours, "
    "or up to 7 days when the human agent tag is enabled in settings."
)
TOO_LATE = "The customer last wrote more than 7 days ago; Meta allows no reply until the customer writes again."


@dataclass(frozen=True, slots=True)
class Delivery:
    """How the Send API is asked to deliver a reply."""

    messaging_type: str
    tag: str | None = None


class WindowClosed(Exception):
    """Meta would refuse a reply now; ``detail`` says why, for the manager."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def decide(last_inbound_at: datetime | None, now: datetime, *, human_agent: bool) -> Delivery:
    """The messaging type for a reply sent at ``now``; :class:`WindowClosed` when none is allowed."""
    if last_inbound_at is None:
        raise WindowClosed(NEVER_WROTE)
    elapsed = now - last_inbound_at
    if elapsed < RESPONSE_WINDOW:
        return Delivery("RESPONSE")
    if elapsed >= HUMAN_AGENT_WINDOW:
        raise WindowClosed(TOO_LATE)
    if not human_agent:
        raise WindowClosed(NEEDS_HUMAN_AGENT)
    return Delivery("MESSAGE_TAG", "HUMAN_AGENT")


async def human_agent_enabled(session: AsyncSession, settings: CrmSettings) -> bool:
    """Whether admins allow HUMAN_AGENT replies: their override, else ``META_HUMAN_AGENT``.

    Read from crm's own ``settings`` table (the truth the live-settings bucket mirrors) in
    the caller's transaction, so a change applies to the very next reply on every
    replica and in worker-only processes, with no propagation delay.
    """
    stored = (
        await session.execute(select(col(Setting.value)).where(col(Setting.key) == HUMAN_AGENT_KEY))
    ).scalar_one_or_none()
    if stored is not None:
        return stored.strip().lower() == "true"
    return settings.meta_human_agent
