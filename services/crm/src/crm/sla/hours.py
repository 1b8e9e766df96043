"""Business hours as plain functions: how much working time lies between two moments, and
the moment a given amount of working time before another one.

The working day opens and closes on the business's wall clock (``business.hours``, e.g.
``09:00-18:00``; a closing time before the opening one spans midnight, the shift belonging
to the day it opens), on working days only (Monday to Friday by default), in its time zone
(``business.timezone``). A window's length is real elapsed time, so a shift over a
daylight-saving change is an hour shorter or longer, as the clock on the wall says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["MAX_DAYS", "WEEKDAYS", "BusinessHours", "parse_hours"]

WEEKDAYS = frozenset(range(5))
"""Monday (0) to Friday (4)."""
MAX_DAYS = 400
"""How far back :meth:`BusinessHours.rewind` walks before it gives up."""

_HOURS = re.compile(r"^(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$")


def _clock(text: str) -> time:
    hours, minutes = int(text[:2]), int(text[3:])
    if hours > 23 or minutes > 59:
        raise ValueError("must be opening and closing time as HH:MM-HH:MM, e.g. 09:00-18:00")
    return time(hours, minutes)


def parse_hours(value: str) -> tuple[time, time]:
    """``09:00-18:00`` → (opening, closing); :class:`ValueError` (saying what is wrong) for anything else."""
    match = _HOURS.match(value.strip())
    if match is None:
        raise ValueError("must be opening and closing time as HH:MM-HH:MM, e.g. 09:00-18:00")
    opening, closing = _clock(match["start"]), _clock(match["end"])
    if opening == closing:
        raise ValueError("must open and close at different times (an end before the start spans midnight)")
    return opening, closing


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """When the business works: daily opening and closing time, working days, time zone."""

    opening: time
    closing: time
    zone: ZoneInfo
    days: frozenset[int] = WEEKDAYS

    @classmethod
    def from_settings(cls, hours: str, timezone: str, days: frozenset[int] = WEEKDAYS) -> BusinessHours:
        opening, closing = parse_hours(hours)
        return cls(opening, closing, ZoneInfo(timezone), days)

    def window(self, day: date) -> tuple[datetime, datetime] | None:
        """The working window opening on ``day``, in UTC (arithmetic on wall-clock datetimes
        of one zone ignores a daylight-saving change), None on a day off."""
        if day.weekday() not in self.days:
            return None
        closing_day = day if self.closing > self.opening else day + timedelta(days=1)
        start = datetime.combine(day, self.opening, tzinfo=self.zone)
        end = datetime.combine(closing_day, self.closing, tzinfo=self.zone)
        return start.astimezone(UTC), end.astimezone(UTC)

    def _windows(self, first: date, step: int, days: int) -> Iterator[tuple[datetime, datetime]]:
        for offset in range(days):
            found = self.window(first + timedelta(days=step * offset))
            if found is not None:
                yield found

    def seconds_between(self, start: datetime, end: datetime) -> float:
        """Working seconds in [start, end) (0 when end is not after start)."""
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if end <= start:
            return 0.0
        # The window opening the day before may still be open at start (a night shift).
        first = start.astimezone(self.zone).date() - timedelta(days=1)
        total = 0.0
        for opens, closes in self._windows(first, 1, (end - start).days + 3):
            if opens >= end:
                break
            overlap = (min(closes, end) - max(opens, start)).total_seconds()
            total += max(overlap, 0.0)
        return total

    def rewind(self, end: datetime, seconds: float) -> datetime | None:
        """The latest moment ``s`` with ``seconds_between(s, end) == seconds``: whoever has
        waited since ``s`` or earlier has waited at least that long in working time. None
        when the days walked hold less working time than that."""
        end = end.astimezone(UTC)
        remaining = seconds
        if remaining <= 0:
            return end
        first = end.astimezone(self.zone).date()
        for opens, closes in self._windows(first, -1, MAX_DAYS):
            if opens >= end:
                continue
            available = (min(closes, end) - opens).total_seconds()
            if available >= remaining:
                return min(closes, end) - timedelta(seconds=remaining)
            remaining -= available
        return None
