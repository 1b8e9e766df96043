"""The jobs the system runs, as code: each replica writes them into ``jobs`` at start.

The scheduler keeps time; the owner named here handles ``scheduler.tick.<name>`` and
reports ``<owner>.job.finished``. A definition without a time zone of its own runs in the
business time zone (``business.timezone``), and follows it when an admin changes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from jggl_common.contracts import JOB_NAME_PATTERN

from .schedule import Schedule

__all__ = ["RETENTION_OWNERS", "JobDefinition", "builtin_jobs"]

_NAME = re.compile(JOB_NAME_PATTERN)
RETENTION_OWNERS = ("crm", "ai", "notifier")
"""The services with a ``retention.<service>`` job (``jggl_common.retention``)."""


@dataclass(frozen=True, slots=True)
class JobDefinition:
    """A job: its name (a subject token), its owner, its schedule and what it is for."""

    name: str
    owner: str
    kind: Literal["interval", "cron"]
    expression: str
    description: str
    timezone: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or len(self.name) > 40:
            raise ValueError(f"a job name is lower-case subject tokens of at most 40 characters: {self.name!r}")
        self.schedule("UTC")  # refuses a bad expression when the definition is written, not at its first slot

    def schedule(self, business_timezone: str) -> Schedule:
        """The schedule, in the job's own time zone or else the business's."""
        return Schedule(self.kind, self.expression, self.timezone or business_timezone)


def builtin_jobs(daily_digest_at: str = "09:00") -> list[JobDefinition]:
    """The system's jobs (DESIGN §3 "Scheduler"); ``daily_digest_at`` is ``HH:MM`` local time."""
    hour, minute = (int(part) for part in daily_digest_at.split(":"))
    return [
        JobDefinition(
            "sla_check", "crm", "interval", "60", "announce customers waiting past the SLA, in business hours"
        ),
        JobDefinition("tasks_due", "crm", "interval", "60", "announce tasks reaching their due time"),
        JobDefinition(
            "daily_digest", "crm", "cron", f"{minute} {hour} * * *", "each manager's daily digest, in the morning"
        ),
        JobDefinition(
            "meta_sync", "crm", "interval", "900", "recover messages lost with missed webhooks (Conversations API)"
        ),
        JobDefinition(
            "channel_health", "crm", "interval", "900", "check page tokens, webhook subscriptions and silent pages"
        ),
        JobDefinition(
            "ai.redo", "ai", "interval", "1800", "offer heuristic or failed analyses to Gemini again once it is healthy"
        ),
        # The retention job: one per owner (an outcome belongs to one service), daily at 03:30
        # business time; each service prunes its own tables under its own retention settings.
        *(
            JobDefinition(
                f"retention.{owner}", owner, "cron", "30 3 * * *", f"delete what {owner} keeps only for a while"
            )
            for owner in RETENTION_OWNERS
        ),
    ]
