"""scheduler configuration (environment variables; see the README's table).

The business time zone follows the live setting ``business.timezone`` once the process
runs; ``BUSINESS_TIMEZONE`` is its default.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from jggl_common.settings import ServiceSettings

_CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class SchedulerSettings(ServiceSettings):
    """What the scheduler needs."""

    service_name: str = "scheduler"
    port: int = 8004
    database_url: str = Field(description="PostgreSQL, e.g. postgresql://postgres@127.0.0.1:5432/jggl")
    db_schema: str = Field(default="scheduler", description="the Postgres schema the scheduler owns")
    db_pool_size: int = Field(default=4, ge=2)
    business_timezone: str = Field(
        default="UTC", description="IANA time zone of the business (live setting business.timezone)"
    )
    daily_digest_at: str = Field(default="09:00", description="local time (HH:MM, business time zone) of the digest")
    scheduler_loop_seconds: float = Field(
        default=1.0, gt=0, le=60, description="how often each replica looks for due slots"
    )
    scheduler_history_days: int = Field(
        default=90, ge=1, description="fires kept this long (each job's newest run and outcome are always kept)"
    )

    @field_validator("business_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("daily_digest_at")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        if not _CLOCK_TIME.match(value):
            raise ValueError("must be HH:MM, e.g. 09:00")
        return value
