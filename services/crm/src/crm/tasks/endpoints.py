"""``/api/deals/{id}/tasks`` and ``/api/tasks/{id}``: to-dos on deals."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from crm.auth.dependencies import CurrentUser
from crm.web.errors import error_responses
from crm.web.state import Session
from crm.web.types import INT4_MAX, DealId

from . import service
from .schemas import TaskCreate, TaskList, TaskPatch, TaskRead

router = APIRouter(tags=["tasks"], responses=error_responses(401, 404))

TaskId = Annotated[int, Path(ge=1, le=INT4_MAX, description="task id")]


@router.get("/api/deals/{deal_id}/tasks", summary="A deal's tasks")
async def list_tasks(user: CurrentUser, session: Session, deal_id: DealId) -> TaskList:
    """Open tasks by due time (undated last), then done ones. 404 for a deal you cannot see."""
    tasks = await service.list_tasks(session, user, deal_id)
    names = await service.user_names(session, (task.assignee_id for task in tasks))
    return TaskList(items=[TaskRead.of(task, names) for task in tasks])


@router.post(
    "/api/deals/{deal_id}/tasks",
    status_code=status.HTTP_201_CREATED,
    summary="Add a task to a deal",
    responses=error_responses(403),
)
async def create_task(user: CurrentUser, session: Session, deal_id: DealId, data: TaskCreate) -> TaskRead:
    """A task for you (or, for admins, anyone who can see the deal), optionally due at a time.

    Written to the deal's timeline.
    """
    task = await service.create_task(session, user, deal_id, data)
    await session.commit()
    return TaskRead.of(task, await service.user_names(session, [task.assignee_id]))


@router.patch("/api/tasks/{task_id}", summary="Change or complete a task", responses=error_responses(403))
async def update_task(user: CurrentUser, session: Session, task_id: TaskId, patch: TaskPatch) -> TaskRead:
    """Rename, reschedule, reassign, complete (``done: true``) or reopen a task on a deal you can see.

    Completing and reopening are written to the deal's timeline.
    """
    task = await service.update_task(session, user, task_id, patch)
    await session.commit()
    return TaskRead.of(task, await service.user_names(session, [task.assignee_id]))
