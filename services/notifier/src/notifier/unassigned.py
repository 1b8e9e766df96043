"""Who is told about a deal nobody is assigned to: its new lead, and its SLA breach.

``NOTIFY_UNASSIGNED_LEADS`` (live setting ``notify.unassigned_leads``, read for each event)
chooses:

* ``everyone`` (the default): every linked chat;
* ``admins``: every linked admin;
* ``round_robin``: one linked manager at a time, in turn (by user id, from the smallest
  again after the largest), each kind of notification in a turn of its own. The turn is
  kept in the notifier's schema (:meth:`~notifier.store.Store.take_turn`), so it carries on
  across replicas and restarts, and an event handled again goes to the same manager. A
  manager is passed over while they cannot be told now: unlinked (crm unlinks a
  deactivated user), the chat blocked the bot, ``/mute``, the kind switched off in
  ``/notify``, or in quiet hours. With no manager to take the turn, the admins are told
  (and the log says so).
"""

from __future__ import annotations

from typing import Literal, get_args

from jggl_common.contracts import utcnow
from jggl_common.logs import get_logger
from notifier.business_time import BusinessClock
from notifier.preferences import Send, decide
from notifier.store import Link, Store

__all__ = ["MODES", "SETTING", "Mode", "UnassignedRecipients"]

log = get_logger(__name__)

Mode = Literal["everyone", "admins", "round_robin"]
MODES: tuple[Mode, ...] = get_args(Mode)
SETTING = "notify.unassigned_leads"


class UnassignedRecipients:
    """The chats told about an unassigned deal, as the setting in force says.

    The live value is read from the live settings the business clock follows (the
    process hands it those at start), else ``default`` (the environment's)."""

    def __init__(self, store: Store, clock: BusinessClock, default: Mode = "everyone") -> None:
        self.store = store
        self.clock = clock
        self.default = default
        self._warned: str | None = None

    def mode(self) -> Mode:
        """The live ``notify.unassigned_leads`` when set and valid, else the environment's."""
        live = self.clock.live.get(SETTING) if self.clock.live is not None else None
        if live is None:
            return self.default
        value = live.strip().lower()
        if value in MODES:
            return value
        if self._warned != live:  # once per bad value, not once per lead
            log.error("unknown notify.unassigned_leads ignored", value=live, using=self.default)
            self._warned = live
        return self.default

    async def recipients(self, event_id: str, kind: str) -> list[Link]:
        """Who is told about ``event_id`` (a notification of ``kind``) on an unassigned deal."""
        mode = self.mode()
        if mode == "everyone":
            return await self.store.recipients(None)
        if mode == "round_robin":
            turn = await self._turn(event_id, kind)
            if turn is not None:
                return [turn]
        admins = await self.store.links_with_role("admin")
        if mode == "round_robin":
            log.warning(
                "round robin: no manager can be told now, the admins are",
                kind=kind,
                event_id=event_id,
                admins=len(admins),
            )
        return admins

    async def _turn(self, event_id: str, kind: str) -> Link | None:
        """The manager whose turn it is, or None when no manager can be told now."""
        managers = [link for link in await self.store.links_with_role("manager") if link.blocked_at is None]
        prefs = await self.store.preferences_of(link.user_id for link in managers)
        now, zone = utcnow(), self.clock.zone()
        reachable = {
            link.user_id: link for link in managers if isinstance(decide(prefs[link.user_id], kind, now, zone), Send)
        }
        user_id = await self.store.take_turn(kind, event_id, reachable)
        return None if user_id is None else reachable[user_id]
