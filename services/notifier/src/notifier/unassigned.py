"""Who is told about a deal nobody is assigned to.

``NOTIFY_UNASSIGNED_LEADS`` (live setting ``notify.unassigned_leads``, read for each event)
chooses:

* ``everyone`` (the default): every linked chat;
* ``admins``: every linked admin hears of the new lead and its SLA breach; the deal's
  other notifications (a new message, a hot lead, a task due) go to every linked chat;
* ``round_robin``: each unassigned deal to one linked manager, in turn (by user id, from
  the smallest again after the largest). The new lead takes the turn and the deal is
  remembered as that manager's (:meth:`~notifier.store.Store.offer_deal`, in the
  notifier's schema: it carries on across replicas and restarts, and an event handled
  again goes to the same manager); the deal's later notifications (new messages, hot
  leads, tasks due, the SLA breach) go to that manager, with their preferences applied as
  for any notification (muted or the kind off: skipped; quiet hours: held). The turn
  passes over a manager who cannot be told the new lead now: unlinked (crm unlinks a
  deactivated user), the chat blocked the bot, ``/mute``, new leads switched off in
  ``/notify``, or in quiet hours. When the deal's manager can no longer be reached at all
  (unlinked or blocked), its next notification takes the next turn, and the deal is that
  manager's from then on. With no manager to take the turn, the admins are told (and the
  log says so).

Once the deal is assigned its notifications go to the assignee, whatever the mode.
"""

from __future__ import annotations

from typing import Literal, get_args

from jggl_common.contracts import utcnow
from jggl_common.logs import get_logger
from notifier.business_time import BusinessClock
from notifier.preferences import Send, decide
from notifier.store import Link, Store

__all__ = ["CHOSEN_KINDS", "MODES", "NEW_LEAD", "SETTING", "Mode", "UnassignedRecipients"]

log = get_logger(__name__)

Mode = Literal["everyone", "admins", "round_robin"]
MODES: tuple[Mode, ...] = get_args(Mode)
SETTING = "notify.unassigned_leads"
NEW_LEAD = "new_lead"
CHOSEN_KINDS = frozenset({NEW_LEAD, "sla_breach"})
"""The kinds whose chats every mode chooses; the others (a new message, a hot lead, a task
due) go to every linked chat unless the mode is ``round_robin``."""


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

    async def recipients(self, event_id: str, kind: str, deal_id: int) -> list[Link]:
        """Who is told about ``event_id`` (a notification of ``kind``) on the unassigned deal ``deal_id``."""
        mode = self.mode()
        if mode == "everyone" or (mode == "admins" and kind not in CHOSEN_KINDS):
            return await self.store.recipients(None)
        if mode == "round_robin":
            manager = await self._manager(kind, deal_id)
            if manager is not None:
                return [manager]
        admins = await self.store.links_with_role("admin")
        if mode == "round_robin":
            log.warning(
                "round robin: no manager can be told now, the admins are",
                kind=kind,
                event_id=event_id,
                deal_id=deal_id,
                admins=len(admins),
            )
        return admins

    async def _manager(self, kind: str, deal_id: int) -> Link | None:
        """The deal's manager: the one it was given to while their chat is linked and not
        blocked, else the next turn (None when no manager can be told now)."""
        managers = {
            link.user_id: link for link in await self.store.links_with_role("manager") if link.blocked_at is None
        }
        offered = None if kind == NEW_LEAD else await self.store.offered_to(deal_id)
        if offered in managers:
            return managers[offered]
        prefs = await self.store.preferences_of(managers)
        now, zone = utcnow(), self.clock.zone()
        reachable = [user for user in managers if isinstance(decide(prefs[user], kind, now, zone), Send)]
        # The lead itself passes over whoever cannot be told it now; a later notification
        # stays with the deal's manager as long as their chat can be reached at all.
        keep = reachable if kind == NEW_LEAD else managers
        user_id = await self.store.offer_deal(deal_id, reachable, keep=keep)
        if user_id is None:
            return None
        if offered is not None and user_id != offered:
            log.info(
                "round robin: the deal passes to the next manager", deal_id=deal_id, kind=kind, was=offered, to=user_id
            )
        return managers[user_id]
