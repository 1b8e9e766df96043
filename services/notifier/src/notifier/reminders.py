"""Notifications of crm's time-driven events (published on the scheduler's ticks), each sent
once per event and chat like the others, with the recipients' preferences applied:

* ``crm.deal.sla_breached``: level ``breach`` → the deal's assignee, or while nobody is
  assigned those ``notify.unassigned_leads`` chooses (:mod:`notifier.unassigned`; every
  linked chat by default); level ``escalation`` → every linked admin except the
  assignee (who had the breach already).
* ``crm.task.due`` → the task's assignee, else the deal's; while neither is set, those
  ``notify.unassigned_leads`` chooses (every linked chat, except under ``round_robin``:
  the deal's manager).
* ``crm.digest.daily`` → that manager.
"""

from __future__ import annotations

from jggl_common.contracts import DailyDigest, SlaBreached, TaskDue
from notifier.notifications import Notifier, naming
from notifier.reminder_texts import render_daily_digest, render_sla_breach, render_task_due

__all__ = ["DailyDigestNotifier", "SlaBreachNotifier", "TaskDueNotifier"]


class SlaBreachNotifier(Notifier):
    """``crm.deal.sla_breached`` → the assignee (``breach``) or the admins (``escalation``)."""

    kind = "sla_breach"

    async def handle(self, event: SlaBreached) -> None:
        data = event.data
        assignee = data.deal.assignee_id
        if data.level == "breach":
            recipients = await self.recipients(event.id, assignee, data.deal.id)
        else:
            recipients = [link for link in await self.store.links_with_role("admin") if link.user_id != assignee]
        if recipients:
            rendered = render_sla_breach(data, self.app_url, self.clock.zone(), event.occurred_at)
            about = naming(data.deal.id, data.deal.contact, event.occurred_at)
            await self.deliver(event.id, recipients, *rendered, occurred_at=event.occurred_at, about=about)


class TaskDueNotifier(Notifier):
    """``crm.task.due`` → the task's assignee, else the deal's, else (neither set) those
    :attr:`unassigned` chooses."""

    kind = "task_due"

    async def handle(self, event: TaskDue) -> None:
        data = event.data
        owner = data.assignee_id if data.assignee_id is not None else data.deal.assignee_id
        recipients = await self.recipients(event.id, owner, data.deal.id)
        if recipients:
            rendered = render_task_due(data, self.app_url, self.clock.zone(), event.occurred_at)
            about = naming(data.deal.id, data.deal.contact, event.occurred_at)
            await self.deliver(event.id, recipients, *rendered, occurred_at=event.occurred_at, about=about)


class DailyDigestNotifier(Notifier):
    """``crm.digest.daily`` → the manager it is for (nobody when they have no linked chat)."""

    kind = "daily_digest"

    async def handle(self, event: DailyDigest) -> None:
        data = event.data
        recipients = await self.store.recipients(data.user_id)
        if recipients:
            rendered = render_daily_digest(data, self.app_url, event.occurred_at)
            await self.deliver(event.id, recipients, *rendered, occurred_at=event.occurred_at)
