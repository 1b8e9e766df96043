"""When a job's slots fall: pure functions of a schedule and a moment.

An *interval* job of N seconds has a slot at every multiple of N seconds since the Unix
epoch, so every replica computes the same slots whenever it started. A *cron* job has a
slot at every moment its 5-field expression matches on the wall clock of its time zone,
as Debian's cron reads it (cronsim): a time skipped by a spring-forward change fires at
the first minute that exists after it, a time repeated by a fall-back change fires once.

A slot is named by its moment in UTC (``20261206T090000Z``), so the name is the same on
every replica and in every time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

__all__ = ["Schedule", "ScheduleError", "slot_name"]

_SLOT_FORMAT = "%Y%m%dT%H%M%SZ"


class ScheduleError(ValueError):
    """A schedule that cannot be: a bad cron expression, interval or time zone."""


def slot_name(moment: datetime) -> str:
    """The slot standing for ``moment``: its UTC time to the second, e.g. ``20261206T090000Z``."""
    return moment.astimezone(UTC).strftime(_SLOT_FORMAT)


@dataclass(frozen=True, slots=True)
class Schedule:
    """An interval (``expression`` = seconds) or a cron expression read in ``timezone``."""

    kind: Literal["interval", "cron"]
    expression: str
    timezone: str

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"unknown time zone {self.timezone!r}") from None
        if self.kind == "interval":
            if not self.expression.isdigit() or int(self.expression) < 1:
                raise ScheduleError(f"an interval is a whole number of seconds, not {self.expression!r}")
        elif len(self.expression.split()) != 5:
            raise ScheduleError(f"a cron expression has 5 fields: {self.expression!r}")
        else:
            try:
                CronSim(self.expression, datetime.now(UTC))
            except CronSimError as exc:
                raise ScheduleError(f"bad cron expression {self.expression!r}: {exc}") from None

    def latest_due(self, now: datetime) -> datetime:
        """The latest slot at or before ``now`` (aware), in UTC."""
        if self.kind == "interval":
            step = int(self.expression)
            return datetime.fromtimestamp(int(now.timestamp()) // step * step, UTC)
        # cronsim steps back from a moment excluded from the search: one second past now.
        start = now.astimezone(ZoneInfo(self.timezone)).replace(microsecond=0) + timedelta(seconds=1)
        return next(CronSim(self.expression, start, reverse=True)).astimezone(UTC)

    def next_after(self, now: datetime) -> datetime:
        """The first slot strictly after ``now`` (aware), in UTC."""
        if self.kind == "interval":
            step = int(self.expression)
            return datetime.fromtimestamp((int(now.timestamp()) // step + 1) * step, UTC)
        start = now.astimezone(ZoneInfo(self.timezone)).replace(microsecond=0)
        return next(CronSim(self.expression, start)).astimezone(UTC)
