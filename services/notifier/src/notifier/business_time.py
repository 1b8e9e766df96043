"""The business's clock: its time zone (live setting ``business.timezone``, else
``BUSINESS_TIMEZONE``), the local day a moment falls in, and where that day starts.

``/stats`` counts "today" in it and quiet hours are read in it, so a manager in the office
and the server in UTC agree on what today and 22:00 mean.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jggl_common.contracts import utcnow
from jggl_common.live_settings import LiveSettings
from jggl_common.logs import get_logger

__all__ = ["BusinessClock", "zone_or_none"]

log = get_logger(__name__)


def zone_or_none(name: str) -> ZoneInfo | None:
    """The IANA zone called ``name``; None for an empty or unknown name."""
    name = name.strip()
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


class BusinessClock:
    """The business time zone, following the live settings once :attr:`live` is set."""

    def __init__(self, default_zone: str = "UTC") -> None:
        self._default = zone_or_none(default_zone) or ZoneInfo("UTC")
        self.live: LiveSettings | None = None
        self._warned: str | None = None

    def zone(self) -> ZoneInfo:
        """The live ``business.timezone`` when set and valid, else the environment's."""
        name = self.live.get("business.timezone") if self.live is not None else None
        if name is None:
            return self._default
        found = zone_or_none(name)
        if found is None:
            if self._warned != name:  # once per bad value, not once per notification
                log.error("unknown business.timezone ignored", timezone=name, using=str(self._default))
                self._warned = name
            return self._default
        return found

    def local(self, moment: datetime | None = None) -> datetime:
        """``moment`` (now by default) on the business's wall clock."""
        return (moment or utcnow()).astimezone(self.zone())

    def day_start(self, moment: datetime | None = None) -> datetime:
        """The start (local midnight, as an aware datetime) of the business day ``moment`` is in."""
        local = self.local(moment)
        return datetime.combine(local.date(), time(0), tzinfo=local.tzinfo)

    def next_day_start(self, moment: datetime | None = None) -> datetime:
        """The start of the following business day (a DST day is 23 or 25 hours long)."""
        start = self.day_start(moment)
        return datetime.combine(start.date() + timedelta(days=1), time(0), tzinfo=start.tzinfo)
