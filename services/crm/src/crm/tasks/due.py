"""Announcing tasks that reach their due time: ``crm.task.due``, once per due time.

The sweep takes the open tasks due by now that were not announced for their current due
time (rows locked and skipped by a concurrent sweep), stages one event each with its deal,
and marks them in the same transaction. Moving a task's due time or reopening it clears
the mark (``crm.tasks.service``), so the new due time is announced in its turn; the event
id includes the due time, so a repeated sweep never announces one twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.deals.events import row_key, snapshot
from crm.models import Contact, Deal, Stage
from jggl_common.contracts import TaskDue, TaskDueData, stable_event_id
from jggl_common.outbox import stage

from .repository import due_tasks, mark_due_notified

__all__ = ["announce_due_tasks"]

PRODUCER = "crm"


async def announce_due_tasks(
    session: AsyncSession, now: datetime, *, limit: int = 500, correlation_id: str | None = None
) -> int:
    """Stage ``crm.task.due`` for up to ``limit`` tasks due by ``now``; how many (the caller
    commits, and calls again while the batch was full)."""
    tasks = await due_tasks(session, now, limit=limit)
    if not tasks:
        return 0
    deals = {
        deal.id: (deal, contact, stage_key)
        for deal, contact, stage_key in (
            await session.execute(
                select(Deal, Contact, col(Stage.key))
                .join(Contact, col(Contact.id) == col(Deal.contact_id))
                .join(Stage, col(Stage.id) == col(Deal.stage_id))
                .where(col(Deal.id).in_({task.deal_id for task in tasks}))
            )
        ).all()
    }
    for task in tasks:
        assert task.id is not None
        assert task.due_at is not None
        deal, contact, stage_key = deals[task.deal_id]
        await stage(
            session,
            TaskDue(
                id=stable_event_id(f"crm.task.due:{row_key(task.id, task.created_at)}:{task.due_at.isoformat()}"),
                producer=PRODUCER,
                correlation_id=correlation_id,
                data=TaskDueData(
                    task_id=task.id,
                    title=task.title,
                    due_at=task.due_at,
                    assignee_id=task.assignee_id,
                    deal=snapshot(deal, contact, stage_key),
                ),
            ),
        )
    await mark_due_notified(session, [task.id for task in tasks if task.id is not None], now)
    return len(tasks)
