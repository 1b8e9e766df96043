"""Working tasks. Never commits.

Who may touch a task follows who may see its deal. A task goes to someone who can see
its deal (else they could never open it), and managers give tasks only to themselves,
as with deals: a manager takes a task nobody has or lets go of their own, never a
colleague's. When a deal goes to someone, the tasks of managers who can then no longer
see it go with it (:func:`follow_deal_assignee`); a deactivated user's tasks go to nobody
(:func:`release_tasks_of`); an admin made a manager hands their open tasks on colleagues'
deals to those deals' assignees (:func:`follow_demotion`). Creating, completing, reopening
and every change of hands of a task (``task_reassigned``, whoever or whatever rule moved it)
leave an entry in the deal's timeline, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.deals.access import is_admin
from crm.deals.repository import DealRepository
from crm.models import Task, User
from crm.web.errors import Forbidden, NotFound, Unprocessable
from jggl_common.contracts import utcnow

from .repository import TaskMove, TaskRepository
from .schemas import TaskCreate, TaskPatch

_DEAL_NOT_FOUND = "Deal not found"
_TASK_NOT_FOUND = "Task not found"


async def user_names(session: AsyncSession, ids: Iterable[int | None]) -> dict[int, str]:
    """Names of the given users, by id."""
    wanted = {user_id for user_id in ids if user_id is not None}
    if not wanted:
        return {}
    rows = await session.execute(select(col(User.id), col(User.name)).where(col(User.id).in_(wanted)))
    return {int(user_id or 0): str(name) for user_id, name in rows.all()}


async def _check_assignee(
    session: AsyncSession, actor: User, deal_id: int, assignee_id: int | None, *, current: int | None = None
) -> None:
    if not is_admin(actor):
        # As with deals: a manager takes a task nobody has or lets go of their own, and
        # never hands one to someone else nor takes one from a colleague (on an unassigned
        # deal several managers see the same tasks).
        if current is not None and current != actor.id:
            raise Forbidden("This task is assigned to someone else; only an admin can reassign it")
        if assignee_id is not None and assignee_id != actor.id:
            raise Forbidden("Managers can assign tasks only to themselves")
    if assignee_id is None:
        return
    assignee = await session.get(User, assignee_id)
    if assignee is None or not assignee.is_active:
        raise Unprocessable("assignee_id must be an active user")
    if not await TaskRepository(session).deal_visible_to(assignee, deal_id):
        raise Unprocessable("The assignee cannot see this deal; assign the deal to them first")


async def list_tasks(session: AsyncSession, user: User, deal_id: int) -> list[Task]:
    """The tasks of a deal ``user`` may see; :class:`NotFound` otherwise."""
    repository = TaskRepository(session)
    if not await repository.deal_visible_to(user, deal_id):
        raise NotFound(_DEAL_NOT_FOUND)
    return list(await repository.of_deal(deal_id))


async def create_task(session: AsyncSession, actor: User, deal_id: int, data: TaskCreate) -> Task:
    """A new task on a visible deal, assigned to ``data.assignee_id`` or to ``actor``."""
    if not await TaskRepository(session).deal_visible_to(actor, deal_id):
        raise NotFound(_DEAL_NOT_FOUND)
    assignee_id = data.assignee_id if data.assignee_id is not None else actor.id
    await _check_assignee(session, actor, deal_id, assignee_id)
    now = utcnow()
    task = Task(
        deal_id=deal_id,
        title=data.title,
        due_at=data.due_at,
        assignee_id=assignee_id,
        created_by_id=actor.id,
        created_at=now,
        updated_at=now,
    )
    session.add(task)
    await session.flush()
    DealRepository(session).add_activity(
        deal_id,
        "task_created",
        actor,
        {
            "task_id": task.id,
            "title": task.title,
            "due_at": task.due_at.isoformat() if task.due_at else None,
            "assignee_id": assignee_id,
        },
    )
    await session.flush()
    return task


async def update_task(session: AsyncSession, actor: User, task_id: int, patch: TaskPatch) -> Task:
    """Apply ``patch`` to a task whose deal ``actor`` may see; :class:`NotFound` otherwise."""
    task = await TaskRepository(session).get_visible(actor, task_id, for_update=True)
    if task is None:
        raise NotFound(_TASK_NOT_FOUND)
    fields = patch.model_fields_set
    timeline: list[tuple[str, dict[str, Any]]] = []
    changed = False
    if "title" in fields and patch.title is not None and patch.title != task.title:
        task.title, changed = patch.title, True
    if "due_at" in fields and patch.due_at != task.due_at:
        # A new due time is announced again when it comes.
        task.due_at, task.due_notified_at, changed = patch.due_at, None, True
    if "assignee_id" in fields and patch.assignee_id != task.assignee_id:
        await _check_assignee(session, actor, task.deal_id, patch.assignee_id, current=task.assignee_id)
        timeline.append(("task_reassigned", _moved(task, task.assignee_id, patch.assignee_id)))
        task.assignee_id, changed = patch.assignee_id, True
    if "done" in fields and patch.done is not None and patch.done != task.done:
        now = utcnow()
        task.done, changed = patch.done, True
        if patch.done:
            task.done_at, task.done_by_id = now, actor.id
            timeline.append(("task_completed", {"task_id": task.id, "title": task.title}))
        else:
            task.done_at, task.done_by_id, task.due_notified_at = None, None, None
            timeline.append(("task_reopened", {"task_id": task.id, "title": task.title}))
    if not changed:
        return task
    task.updated_at = utcnow()
    repository = DealRepository(session)
    for kind, data in timeline:
        repository.add_activity(task.deal_id, kind, actor, data)
    await session.flush()
    return task


def _moved(task: Task, from_id: int | None, to_id: int | None, reason: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"task_id": task.id, "title": task.title, "from": from_id, "to": to_id}
    if reason is not None:
        data["reason"] = reason
    return data


async def _record(session: AsyncSession, actor: User, moves: list[TaskMove], reason: str) -> list[int]:
    """Put each move on its deal's timeline (``reason`` names the rule that moved it); the task ids."""
    repository = DealRepository(session)
    for move in moves:
        task = move.task
        repository.add_activity(
            task.deal_id, "task_reassigned", actor, _moved(task, move.from_id, task.assignee_id, reason)
        )
    await session.flush()
    return [int(move.task.id or 0) for move in moves]


async def follow_deal_assignee(session: AsyncSession, actor: User, deal_id: int, assignee_id: int | None) -> list[int]:
    """The deal now belongs to ``assignee_id``: its tasks assigned to managers who can no
    longer see it go to that assignee; the ids of the tasks handed over.

    Called in the transaction that reassigns the deal. An unassigned deal is seen by every
    manager, and admins see every deal, so their tasks stay where they are.
    """
    if assignee_id is None:
        return []
    return await _record(session, actor, await TaskRepository(session).hand_over(deal_id, assignee_id), "deal_assigned")


async def release_tasks_of(session: AsyncSession, actor: User, user_id: int) -> list[int]:
    """A deactivated user's tasks go to nobody (they can see no deal any more); the ids of those tasks.

    Their deals return to the unassigned pool in the same transaction, where the team sees
    them and takes the tasks as they take the deals.
    """
    return await _record(session, actor, await TaskRepository(session).release_all_of(user_id), "deactivated")


async def follow_demotion(session: AsyncSession, actor: User, user_id: int) -> list[int]:
    """An admin became a manager: their open tasks on deals assigned to someone else go to
    each deal's assignee (the one who works the deal, and who sees it); the ids of those tasks.

    Called in the transaction that changes the role. Their tasks on their own deals and on
    unassigned ones stay: a manager sees those.
    """
    return await _record(session, actor, await TaskRepository(session).hand_over_others_deals_of(user_id), "demoted")
