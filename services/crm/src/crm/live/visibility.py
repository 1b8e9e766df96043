"""Which of crm's events go to whom on the live stream: the deal visibility rule applied to events.

An admin sees every live event. A manager sees the events of their own deals and of
unassigned ones, judged by the assignee the event itself carries (events carry the
deal's state, so no database is asked). One exception keeps pages honest: when a deal is
taken away from a manager, that ``crm.deal.updated`` still reaches them, so the page can
drop the deal. A customer's new name (``crm.contact.updated``) reaches a manager who may
see one of the customer's open deals the event lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEAL_EVENTS = (
    "crm.deal.created",
    "crm.deal.updated",
    "crm.deal.hot_lead",
    "crm.deal.sla_breached",
    "crm.message.received",
    "crm.message.sent",
    "crm.message.failed",
    "crm.task.due",
)
"""Events about one deal, shown to whoever may see the deal."""

CONTACT_EVENTS = ("crm.contact.updated",)
"""Events about a customer, shown to whoever may see one of the customer's open deals."""

ADMIN_EVENTS = ("crm.channel.health_changed",)
"""Events only admins receive."""

LIVE_EVENTS = DEAL_EVENTS + CONTACT_EVENTS + ADMIN_EVENTS
"""Every event type (and subject) the live stream carries; commands, crm's own queues,
Telegram link requests and digests are not among them."""


def _assignee_id(value: Any) -> int | None:
    if value is not None and not isinstance(value, int):
        raise TypeError("assignee_id is not an id")
    return value


def _assignee(event_type: str, data: Mapping[str, Any]) -> int | None:
    """The deal's assignee as the event reports it (after the change)."""
    if event_type == "crm.deal.created" or event_type.startswith("crm.message."):  # flat events
        return _assignee_id(data["assignee_id"])
    # updated, hot lead, SLA breach and due task carry the deal's snapshot
    return _assignee_id(data["deal"]["assignee_id"])


def _deal_visible(assignee: int | None, user_id: int) -> bool:
    """The deal rule: a manager sees their own deals and the unassigned ones."""
    return assignee is None or assignee == user_id


def _was_assigned_to(data: Mapping[str, Any], user_id: int) -> bool:
    change = data.get("changes", {}).get("assignee_id")
    return isinstance(change, list | tuple) and len(change) == 2 and change[0] == user_id


def visible_to(event: Mapping[str, Any], *, user_id: int, admin: bool) -> bool:
    """Whether the user may receive ``event`` (a decoded envelope); malformed events go to nobody."""
    event_type = event.get("type")
    data = event.get("data")
    if event_type not in LIVE_EVENTS or not isinstance(data, Mapping):
        return False
    if admin:
        return True
    if event_type in ADMIN_EVENTS:
        return False
    try:
        if event_type in CONTACT_EVENTS:  # the customer's open deals
            assignees = [_assignee_id(deal["assignee_id"]) for deal in data["open_deals"]]
        else:
            assignees = [_assignee(event_type, data)]
    except (KeyError, TypeError):
        return False
    if any(_deal_visible(assignee, user_id) for assignee in assignees):
        return True
    return event_type == "crm.deal.updated" and _was_assigned_to(data, user_id)
