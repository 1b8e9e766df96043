"""Contracts of the scheduler: its ticks, the outcomes owners report, the commands that
steer it and the state it announces.

The scheduler keeps time, the owners do the work (DESIGN §3 "Scheduler"):

* ``scheduler.tick.<job>`` (:class:`SchedulerTick`): a job's slot is due. The event id is
  exactly ``<job>:<slot>`` (:func:`tick_id`) and doubles as ``Nats-Msg-Id``, so replicas
  that fire the same slot side by side leave one tick in the stream.
* ``<owner>.job.finished`` (:class:`JobFinished`): the owning service handled a tick and
  says how it went (``crm.job.finished``, ``ai.job.finished``…, see :func:`job_finished_subject`).
* ``scheduler.cmd.run_job`` / ``scheduler.cmd.set_job_enabled``: an admin asked, through
  crm, to run a job now or to switch it on or off.
* ``scheduler.job.updated`` (:class:`JobUpdated`): a job's definition and its last runs,
  whenever they change, with a revision that only grows (keep the highest).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from .base import Envelope

__all__ = [
    "JOB_NAME_PATTERN",
    "SLOT_PATTERN",
    "JobFinished",
    "JobFinishedData",
    "JobKind",
    "JobRun",
    "JobStatus",
    "JobUpdated",
    "JobUpdatedData",
    "RunJobCommand",
    "RunJobCommandData",
    "SchedulerTick",
    "SchedulerTickData",
    "SetJobEnabledCommand",
    "SetJobEnabledCommandData",
    "job_finished_subject",
    "tick_id",
    "tick_subject",
]

JOB_NAME_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
"""Job names are NATS subject tokens: ``sla_check``, ``ai.redo`` (a dot nests the subject)."""
SLOT_PATTERN = r"^[A-Za-z0-9_-]+$"
"""Slots are ``20261206T090000Z`` (the scheduled moment in UTC) or ``manual-<command id>``."""

JobKind = Literal["interval", "cron"]
JobStatus = Literal["pending", "done", "failed"]
_JOB = Field(min_length=1, max_length=40, pattern=JOB_NAME_PATTERN, description="the job's name, e.g. sla_check")
_SLOT = Field(min_length=1, max_length=50, pattern=SLOT_PATTERN, description="the slot: UTC moment or manual-<id>")


def tick_subject(job: str) -> str:
    """``scheduler.tick.<job>``."""
    return f"scheduler.tick.{job}"


def tick_id(job: str, slot: str) -> str:
    """``<job>:<slot>``, the event id and ``Nats-Msg-Id`` of a tick."""
    return f"{job}:{slot}"


def job_finished_subject(owner: str) -> str:
    """``<owner>.job.finished``: where the owning service reports a tick's outcome."""
    return f"{owner}.job.finished"


class SchedulerTickData(BaseModel):
    """A slot of a job is due: the owner does the job's work for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job: str = _JOB
    slot: str = _SLOT
    scheduled_for: datetime = Field(description="the moment the slot stands for (a manual run: when it was asked)")
    fired_at: datetime = Field(description="when the scheduler fired it (later than scheduled_for after an outage)")
    manual: bool = Field(default=False, description="an admin's 'run now', not the schedule")
    requested_by_user_id: int | None = Field(default=None, description="the admin who asked, for a manual run")
    params: dict[str, JsonValue] = Field(
        default_factory=dict, description="what a manual run asked for, e.g. a backfill's time range"
    )


class SchedulerTick(Envelope):
    """A job's slot is due. Subject ``scheduler.tick.<job>``; id ``<job>:<slot>``."""

    subject: ClassVar[str] = "scheduler.tick"

    type: Literal["scheduler.tick"] = "scheduler.tick"
    version: Literal[1] = 1
    data: SchedulerTickData

    @model_validator(mode="after")
    def _id_is_job_and_slot(self) -> SchedulerTick:
        # The id is what keeps one tick per slot in JetStream: it must never be a random one.
        if self.id != tick_id(self.data.job, self.data.slot):
            raise ValueError(f"a tick's id must be {tick_id(self.data.job, self.data.slot)!r}")
        return self


class JobFinishedData(BaseModel):
    """How the owner's handling of one tick ended."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job: str = _JOB
    slot: str = _SLOT
    status: Literal["done", "failed"]
    counts: dict[str, int] = Field(default_factory=dict, description="what the run did, e.g. {'breaches': 3}")
    error: str | None = Field(default=None, max_length=2000, description="why it failed")
    started_at: datetime
    finished_at: datetime


class JobFinished(Envelope):
    """An owner handled a tick. Subject ``<owner>.job.finished`` (see :func:`job_finished_subject`).

    The scheduler records it on the tick's fire; a repeat changes nothing, and of two
    outcomes for one slot ``done`` wins over ``failed``, then the later one.
    """

    subject: ClassVar[str] = "job.finished"

    type: Literal["job.finished"] = "job.finished"
    version: Literal[1] = 1
    data: JobFinishedData


class RunJobCommandData(BaseModel):
    """Run a job now, outside its schedule (even while it is disabled)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job: str = _JOB
    requested_by_user_id: int | None = None
    params: dict[str, JsonValue] = Field(default_factory=dict, description="passed to the owner in the tick")


class RunJobCommand(Envelope):
    """Run a job now: one manual tick, slot ``manual-<command id>``. Subject ``scheduler.cmd.run_job``."""

    subject: ClassVar[str] = "scheduler.cmd.run_job"

    type: Literal["scheduler.cmd.run_job"] = "scheduler.cmd.run_job"
    version: Literal[1] = 1
    data: RunJobCommandData


class SetJobEnabledCommandData(BaseModel):
    """Switch a job's schedule on or off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job: str = _JOB
    enabled: bool
    requested_by_user_id: int | None = None


class SetJobEnabledCommand(Envelope):
    """Enable or disable a job; of two commands the later ``occurred_at`` wins, whatever
    the delivery order. Subject ``scheduler.cmd.set_job_enabled``."""

    subject: ClassVar[str] = "scheduler.cmd.set_job_enabled"

    type: Literal["scheduler.cmd.set_job_enabled"] = "scheduler.cmd.set_job_enabled"
    version: Literal[1] = 1
    data: SetJobEnabledCommandData


class JobRun(BaseModel):
    """One fire of a job and, once the owner reported it, its outcome."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slot: str = _SLOT
    scheduled_for: datetime
    fired_at: datetime
    manual: bool
    requested_by_user_id: int | None = None
    status: JobStatus = Field(description="pending until the owner reports done or failed")
    counts: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobUpdatedData(BaseModel):
    """A job as the scheduler knows it now."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = _JOB
    kind: JobKind
    expression: str = Field(description="seconds between slots (interval) or a 5-field cron expression")
    timezone: str = Field(description="IANA zone a cron expression is read in")
    owner: str = Field(description="the service that handles the ticks, e.g. crm")
    description: str
    enabled: bool
    revision: int = Field(ge=1, description="grows with every change: keep the highest")
    next_run: datetime | None = Field(description="the next scheduled slot; null while disabled")
    last_run: JobRun | None = Field(description="the newest fire, finished or not")
    last_outcome: JobRun | None = Field(description="the newest fire whose outcome is known")
    last_success_at: datetime | None = Field(description="when the newest successful run finished")
    updated_at: datetime


class JobUpdated(Envelope):
    """A job's definition, state or last run changed. Subject ``scheduler.job.updated``;
    id ``job-updated:<name>:<revision>``."""

    subject: ClassVar[str] = "scheduler.job.updated"

    type: Literal["scheduler.job.updated"] = "scheduler.job.updated"
    version: Literal[1] = 1
    data: JobUpdatedData
