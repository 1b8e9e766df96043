"""Queries over tasks. A task is visible exactly when its deal is (``crm.deals.access``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.deals.access import visible_deals
from crm.models import Deal, Task, User
from jggl_common.contracts import utcnow

__all__ = ["TaskMove", "TaskRepository", "due_tasks", "mark_due_notified"]


@dataclass(frozen=True, slots=True)
class TaskMove:
    """A task that changed hands, and whose it was before."""

    task: Task
    from_id: int | None


def _reassign(changes: Iterable[tuple[Task, int | None]]) -> list[TaskMove]:
    """Give each task to its new assignee (written with the transaction); the moves, in order."""
    now = utcnow()
    moves = []
    for task, assignee_id in changes:
        moves.append(TaskMove(task, task.assignee_id))
        task.assignee_id, task.updated_at = assignee_id, now
    return moves


class TaskRepository:
    """Tasks as a user sees them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def of_deal(self, deal_id: int) -> Sequence[Task]:
        """A deal's tasks: open ones first by due time (undated last), then done ones."""
        query = (
            select(Task)
            .where(col(Task.deal_id) == deal_id)
            .order_by(
                col(Task.done),
                col(Task.due_at).asc().nulls_last(),
                col(Task.id),
            )
        )
        return (await self.session.execute(query)).scalars().all()

    async def get_visible(self, user: User, task_id: int, *, for_update: bool = False) -> Task | None:
        """The task if ``user`` may see its deal (locked for the transaction when ``for_update``)."""
        query = (
            select(Task)
            .join(Deal, col(Deal.id) == col(Task.deal_id))
            .where(col(Task.id) == task_id, visible_deals(user))
        )
        if for_update:
            query = query.with_for_update(of=Task)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def hand_over(self, deal_id: int, assignee_id: int) -> list[TaskMove]:
        """Give the deal's tasks of managers other than ``assignee_id`` to ``assignee_id``."""
        managers = select(col(User.id)).where(col(User.role) != "admin")
        tasks = await self._locked(
            select(Task).where(
                col(Task.deal_id) == deal_id,
                col(Task.assignee_id) != assignee_id,
                col(Task.assignee_id).in_(managers),
            )
        )
        return _reassign((task, assignee_id) for task in tasks)

    async def hand_over_others_deals_of(self, user_id: int) -> list[TaskMove]:
        """Give the open tasks of ``user_id`` on deals assigned to someone else to each deal's assignee."""
        rows = await self.session.execute(
            select(Task, col(Deal.assignee_id))
            .join(Deal, col(Deal.id) == col(Task.deal_id))
            .where(
                col(Task.assignee_id) == user_id,
                sa.not_(col(Task.done)),
                col(Deal.assignee_id).is_not(None),
                col(Deal.assignee_id) != user_id,
            )
            .order_by(col(Task.id))
            .with_for_update(of=Task)
        )
        return _reassign((task, deal_assignee) for task, deal_assignee in rows.tuples().all())

    async def release_all_of(self, user_id: int) -> list[TaskMove]:
        """Leave every task of ``user_id`` to nobody."""
        tasks = await self._locked(select(Task).where(col(Task.assignee_id) == user_id))
        return _reassign((task, None) for task in tasks)

    async def _locked(self, query: Select[Task]) -> Sequence[Task]:
        return (await self.session.execute(query.order_by(col(Task.id)).with_for_update())).scalars().all()

    async def deal_visible_to(self, user: User, deal_id: int) -> bool:
        """Whether ``user`` may see the deal (so could work a task on it)."""
        query = select(col(Deal.id)).where(col(Deal.id) == deal_id, visible_deals(user))
        return (await self.session.execute(query)).first() is not None


async def due_tasks(session: AsyncSession, now: datetime, *, limit: int = 500) -> list[Task]:
    """Open tasks due at or before ``now`` whose due time has not been announced yet, earliest first.

    Served by the partial index ``ix_tasks_due_pending``. Rows are locked and skipped by
    concurrent sweeps (``SKIP LOCKED``), so two scheduler replicas never announce one task twice;
    call :func:`mark_due_notified` in the same transaction.
    """
    query = (
        select(Task)
        .where(
            sa.not_(col(Task.done)),
            col(Task.due_notified_at).is_(None),
            col(Task.due_at) <= now,
        )
        .order_by(col(Task.due_at), col(Task.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(query)).scalars().all())


async def mark_due_notified(session: AsyncSession, task_ids: Sequence[int], at: datetime) -> None:
    """Record that ``crm.task.due`` went out for these tasks' current due time."""
    if task_ids:
        await session.execute(
            update(Task)
            .where(col(Task.id).in_(list(task_ids)))
            .values(due_notified_at=at)
            .execution_options(synchronize_session=False)
        )
