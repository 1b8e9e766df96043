"""What the tasks API reads and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from crm.deals.schemas import AssigneeRef
from crm.models import Task
from crm.web.types import INT4_MAX, CleanStr, UtcDatetime


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


Title = Annotated[CleanStr, Field(min_length=1, max_length=500), AfterValidator(_not_blank)]
AssigneeId = Annotated[int, Field(ge=1, le=INT4_MAX)]


class TaskCreate(BaseModel):
    """A new task on a deal."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    due_at: UtcDatetime | None = Field(default=None, description="when it is due (naive times are UTC)")
    assignee_id: AssigneeId | None = Field(
        default=None, description="who does it; you when absent (managers may only assign themselves)"
    )


class TaskPatch(BaseModel):
    """Changes to a task; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    due_at: UtcDatetime | None = Field(default=None, description="null removes the due time")
    done: bool | None = Field(default=None, description="true completes the task, false reopens it")
    assignee_id: AssigneeId | None = Field(default=None, description="null leaves the task to nobody")

    @model_validator(mode="after")
    def _not_null(self) -> Self:
        for name in ("title", "done"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class TaskRead(BaseModel):
    """A task as managers see it."""

    id: int
    deal_id: int
    title: str
    due_at: datetime | None
    assignee_id: int | None
    assignee: AssigneeRef | None
    done: bool
    done_at: datetime | None
    done_by_id: int | None
    created_by_id: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, task: Task, names: dict[int, str]) -> Self:
        """From the model, with the names of the users it mentions."""
        assert task.id is not None
        assignee = (
            AssigneeRef(id=task.assignee_id, name=names[task.assignee_id])
            if task.assignee_id is not None and task.assignee_id in names
            else None
        )
        return cls(
            id=task.id,
            deal_id=task.deal_id,
            title=task.title,
            due_at=task.due_at,
            assignee_id=task.assignee_id,
            assignee=assignee,
            done=task.done,
            done_at=task.done_at,
            done_by_id=task.done_by_id,
            created_by_id=task.created_by_id,
            created_at=task.created_at,
            updated_at=task.updated_at,
        )


class TaskList(BaseModel):
    """A deal's tasks: open ones by due time (undated last), then done ones."""

    items: list[TaskRead]
