"""Contracts of crm's time-driven events: an SLA breached, a task due, a manager's daily digest.

crm publishes them when it handles the scheduler's ticks (``scheduler.tick.<job>``): the
scheduler keeps time, crm owns the deals and tasks and decides what is late. Each event
carries what a notification shows, so the notifier never asks crm back. Event ids are
stable per occurrence (a deal's waiting episode and level, a task's due time, a manager's
day), so a tick handled twice announces nothing twice.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import Envelope
from .crm import DealSnapshot

__all__ = [
    "DailyDigest",
    "DailyDigestData",
    "DigestDeal",
    "SlaBreachData",
    "SlaBreached",
    "TaskDue",
    "TaskDueData",
]

SlaLevel = Literal["breach", "escalation"]


class SlaBreachData(BaseModel):
    """A customer has waited for a reply longer than the SLA, counted in business hours."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deal: DealSnapshot
    level: SlaLevel = Field(
        description="breach: past the SLA (for the assignee); escalation: past twice the SLA (for the admins)"
    )
    waiting_since: datetime = Field(description="the customer's first unanswered message of this episode")
    waited_minutes: int = Field(ge=0, description="business minutes waited so far")
    sla_minutes: int = Field(gt=0, description="the SLA in force (setting sla.minutes)")
    last_text: str | None = Field(default=None, description="the customer's latest unanswered text, if any")


class SlaBreached(Envelope):
    """A deal's customer waits past the SLA (once per waiting episode and level).
    Subject ``crm.deal.sla_breached``."""

    subject: ClassVar[str] = "crm.deal.sla_breached"

    type: Literal["crm.deal.sla_breached"] = "crm.deal.sla_breached"
    version: Literal[1] = 1
    data: SlaBreachData


class TaskDueData(BaseModel):
    """A task that reached its due time, with its deal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: int
    title: str
    due_at: datetime
    assignee_id: int | None = Field(default=None, description="null: the deal's assignee should do it")
    deal: DealSnapshot


class TaskDue(Envelope):
    """A task reached its due time (once per due time). Subject ``crm.task.due``."""

    subject: ClassVar[str] = "crm.task.due"

    type: Literal["crm.task.due"] = "crm.task.due"
    version: Literal[1] = 1
    data: TaskDueData


class DigestDeal(BaseModel):
    """A deal the digest points at: a customer waiting for a reply."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deal_id: int
    display_name: str
    platform: Literal["messenger", "instagram"]
    stage: str
    waiting_since: datetime


class DailyDigestData(BaseModel):
    """One manager's day at a glance, in the business time zone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: int
    day: date = Field(description="the local date the digest is for")
    timezone: str = Field(description="IANA time zone the day is counted in")
    open_deals: int = Field(ge=0)
    awaiting_reply: int = Field(ge=0)
    sla_breaches: int = Field(ge=0, description="open deals past the SLA now")
    tasks_due_today: int = Field(ge=0)
    replies_yesterday: int = Field(ge=0)
    median_response_seconds_yesterday: int | None = Field(default=None, ge=0)
    longest_waiting: list[DigestDeal] = Field(default_factory=list, max_length=10)


class DailyDigest(Envelope):
    """A manager's daily digest (once per manager and day). Subject ``crm.digest.daily``."""

    subject: ClassVar[str] = "crm.digest.daily"

    type: Literal["crm.digest.daily"] = "crm.digest.daily"
    version: Literal[1] = 1
    data: DailyDigestData
