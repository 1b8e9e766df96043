"""Business hours: working time between two moments, and its inverse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm.sla import BusinessHours, parse_hours

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = BusinessHours.from_settings("09:00-18:00", "Europe/Berlin")
NIGHTS = BusinessHours.from_settings("22:00-06:00", "Europe/Berlin", frozenset(range(7)))


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BERLIN)


@pytest.mark.parametrize("bad", ["9-18", "09:00", "25:00-18:00", "09:60-18:00", "09:00-09:00", ""])
def test_bad_hours_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"HH:MM-HH:MM|different times"):
        parse_hours(bad)


def test_time_inside_one_working_day() -> None:
    # Monday 2026-12-07
    assert OFFICE.seconds_between(berlin(2026, 12, 7, 10), berlin(2026, 12, 7, 11, 30)) == 90 * 60


def test_the_night_and_the_weekend_do_not_count() -> None:
    # Friday 17:30 → Monday 09:30: half an hour on Friday, half an hour on Monday.
    assert OFFICE.seconds_between(berlin(2026, 12, 11, 17, 30), berlin(2026, 12, 14, 9, 30)) == 60 * 60
    # Saturday to Sunday: nothing.
    assert OFFICE.seconds_between(berlin(2026, 12, 12, 10), berlin(2026, 12, 13, 17)) == 0


def test_a_message_before_opening_starts_counting_at_opening() -> None:
    assert OFFICE.seconds_between(berlin(2026, 12, 7, 6), berlin(2026, 12, 7, 9, 15)) == 15 * 60


def test_a_night_shift_spans_midnight() -> None:
    # 23:00 → 05:00 the next morning is all inside the 22:00-06:00 shift.
    assert NIGHTS.seconds_between(berlin(2026, 12, 7, 23), berlin(2026, 12, 8, 5)) == 6 * 3600
    # The shift that opened the evening before is still open at 01:00.
    assert NIGHTS.seconds_between(berlin(2026, 12, 8, 1), berlin(2026, 12, 8, 12)) == 5 * 3600


def test_a_shift_over_a_daylight_saving_change_is_as_long_as_the_wall_clock_says() -> None:
    # Berlin moves 02:00 → 03:00 on Sunday 2026-03-29: that night shift lasts 7 hours.
    night = berlin(2026, 3, 28, 21)
    morning = berlin(2026, 3, 29, 7)
    assert NIGHTS.seconds_between(night, morning) == 7 * 3600
    # ... and 9 hours when the clock goes back (Sunday 2026-10-25).
    assert NIGHTS.seconds_between(berlin(2026, 10, 24, 21), berlin(2026, 10, 25, 7)) == 9 * 3600


def test_rewind_finds_when_the_wait_began() -> None:
    # Two working hours before Monday 10:00 is Friday 17:00.
    assert OFFICE.rewind(berlin(2026, 12, 14, 10), 2 * 3600) == berlin(2026, 12, 11, 17).astimezone(UTC)


def test_no_working_days_means_no_answer() -> None:
    never = BusinessHours.from_settings("09:00-18:00", "UTC", frozenset())
    assert never.seconds_between(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)) == 0
    assert never.rewind(datetime(2026, 2, 1, tzinfo=UTC), 60) is None


moments = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))
hours = st.sampled_from([OFFICE, NIGHTS, BusinessHours.from_settings("08:30-20:15", "America/New_York")])


@given(hours, moments, moments, moments)
def test_working_time_adds_up_and_never_exceeds_the_elapsed_time(
    business: BusinessHours, a: datetime, b: datetime, c: datetime
) -> None:
    a, b, c = sorted((a, b, c))
    whole = business.seconds_between(a, c)
    assert whole == pytest.approx(business.seconds_between(a, b) + business.seconds_between(b, c))
    assert 0 <= whole <= (c - a).total_seconds()


@given(hours, moments, st.integers(min_value=1, max_value=30 * 24 * 3600))
def test_rewind_is_the_inverse_of_counting(business: BusinessHours, end: datetime, seconds: int) -> None:
    start = business.rewind(end, seconds)
    assert start is not None
    assert business.seconds_between(start, end) == pytest.approx(seconds)
    # A moment later has waited less than that.
    assert business.seconds_between(start + timedelta(seconds=1), end) < seconds
