"""A manager's notification preferences and what they decide for one notification.

Three switches, kept per user (``preferences`` table): ``/mute`` pauses everything until
``/unmute``; each kind of notification can be turned off (``/notify``); quiet hours
(``/quiet 22:00-08:00``, read in the business time zone) hold what comes meanwhile until
they end. :func:`decide` is the policy as a pure function; :func:`quiet_until` the clock
arithmetic (a quiet period may span midnight, and a DST night is an hour shorter or longer).

Essential notifications pass all three: the goodbye to a chat crm unlinked and the
answer to a command the manager just gave from the bot (:data:`ESSENTIAL_KINDS`), and a
failed reply told to its own author (the Notifier says so per recipient). They are not
listed in ``/notify``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "ADMIN_KINDS",
    "ESSENTIAL_KINDS",
    "KINDS",
    "KIND_OFF_REASON",
    "MUTED_REASON",
    "Defer",
    "Preferences",
    "QuietHoursError",
    "Send",
    "Skip",
    "decide",
    "kinds_for",
    "parse_quiet_hours",
    "quiet_until",
]

KINDS = ("new_lead", "new_message", "hot_lead", "reply_failed", "sla_breach", "task_due", "daily_digest")
"""The kinds every user may switch off, in the order ``/notify`` lists them."""
ADMIN_KINDS = ("channel_needs_reauth", "channel_health")
"""Kinds only admins receive (and so only they see in ``/notify``)."""

ESSENTIAL_KINDS = frozenset({"unlinked", "action_answer"})
"""Kinds always sent: the unlink goodbye, crm's answer to a Take or Reply pressed in the bot."""

MUTED_REASON = "muted by the manager"
KIND_OFF_REASON = "this kind is turned off by the manager (/notify)"


@dataclass(frozen=True, slots=True)
class Preferences:
    """One user's switches (the defaults: everything on, no quiet hours)."""

    muted: bool = False
    muted_kinds: frozenset[str] = frozenset()
    quiet_start: time | None = None
    quiet_end: time | None = None

    @property
    def quiet_hours(self) -> tuple[time, time] | None:
        if self.quiet_start is None or self.quiet_end is None:
            return None
        return self.quiet_start, self.quiet_end


@dataclass(frozen=True, slots=True)
class Send:
    """Send it now."""


@dataclass(frozen=True, slots=True)
class Skip:
    """Do not send it, ever (recorded ``skipped`` with the reason)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Defer:
    """Hold it until ``until`` (UTC), when the quiet hours end."""

    until: datetime


Decision = Send | Skip | Defer


def kinds_for(role: str) -> tuple[str, ...]:
    """The kinds a user of ``role`` receives and may switch off."""
    return KINDS + ADMIN_KINDS if role == "admin" else KINDS


def decide(prefs: Preferences, kind: str, now: datetime, zone: ZoneInfo, *, essential: bool = False) -> Decision:
    """What to do with a notification of ``kind`` for the user with ``prefs`` at ``now``."""
    if essential or kind in ESSENTIAL_KINDS:
        return Send()
    if prefs.muted:
        return Skip(MUTED_REASON)
    if kind in prefs.muted_kinds:
        return Skip(KIND_OFF_REASON)
    hours = prefs.quiet_hours
    until = quiet_until(now, *hours, zone) if hours else None
    return Defer(until) if until is not None else Send()


def _at(day: datetime, wall: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) the clock of ``zone`` shows ``wall`` on ``day``'s date.

    A wall time the clock skips (spring forward) is read with the offset before the
    change, i.e. an hour later by the new clock; one it shows twice (fall back), the
    first time."""
    return datetime.combine(day.date(), wall, tzinfo=zone).astimezone(UTC)


def quiet_until(now: datetime, start: time, end: time, zone: ZoneInfo) -> datetime | None:
    """When the quiet period ``now`` falls in ends (UTC), or None outside quiet hours.

    Quiet hours run from ``start`` (included) to ``end`` (excluded) on the wall clock of
    ``zone``; ``start`` after ``end`` spans midnight (22:00-08:00); equal times are never
    quiet. Aware datetimes are compared in UTC: comparing two of one zone would ignore
    which of a fall-back night's repeated hours each is.
    """
    if start == end:
        return None
    local = now.astimezone(zone)
    wall = local.replace(tzinfo=None).time()
    if start < end:
        inside = start <= wall < end
        ends_on = local
    elif wall >= start:
        inside, ends_on = True, local + timedelta(days=1)
    else:
        inside, ends_on = wall < end, local
    if not inside:
        return None
    until = _at(ends_on, end, zone)
    if until <= now:  # the second pass of a fall-back hour: the end is its second showing
        until = datetime.combine(ends_on.date(), end, tzinfo=zone).replace(fold=1).astimezone(UTC)
    return until if until > now else None


class QuietHoursError(ValueError):
    """``/quiet`` input that is not quiet hours; the message says what is expected."""


_QUIET = re.compile(r"^\s*(\d{1,2})(?::(\d{2}))?\s*[-–—]\s*(\d{1,2})(?::(\d{2}))?\s*$")


def _wall(hours: str, minutes: str | None) -> time:
    h, m = int(hours), int(minutes or 0)
    if h == 24 and m == 0:
        return time(0)
    if h > 23 or m > 59:
        raise QuietHoursError(f"{hours}:{minutes or '00'} is not a time of day")
    return time(h, m)


def parse_quiet_hours(text: str) -> tuple[time, time]:
    """``22:00-08:00`` (also ``22-8``, ``7:30–9``) → (start, end); :class:`QuietHoursError`
    for anything else, or a start equal to the end."""
    match = _QUIET.match(text)
    if match is None:
        raise QuietHoursError("expected two times of day, from-until")
    start, end = _wall(match[1], match[2]), _wall(match[3], match[4])
    if start == end:
        raise QuietHoursError("the start and the end are the same time")
    return start, end
