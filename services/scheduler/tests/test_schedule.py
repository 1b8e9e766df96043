"""The pure parts of the scheduler: where slots fall (time zones, DST), how slots are
named, which outcome wins, which command applies, and the built-in jobs."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jggl_common.contracts import SchedulerTick, SchedulerTickData, tick_id
from scheduler.jobs.definitions import JobDefinition, builtin_jobs
from scheduler.jobs.repository import FireOutcome
from scheduler.jobs.schedule import Schedule, ScheduleError, slot_name
from scheduler.jobs.service import command_applies, manual_slot, outcome_supersedes

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_interval_slots_are_multiples_of_the_interval_since_the_epoch() -> None:
    every_minute = Schedule("interval", "60", "UTC")
    assert every_minute.latest_due(utc("2026-12-06T10:00:59.900")) == utc("2026-12-06T10:00:00")
    assert every_minute.latest_due(utc("2026-12-06T10:01:00")) == utc("2026-12-06T10:01:00")
    assert every_minute.next_after(utc("2026-12-06T10:01:00")) == utc("2026-12-06T10:02:00")
    # The time zone does not move an interval's slots.
    assert Schedule("interval", "900", "Asia/Kolkata").latest_due(utc("2026-12-06T10:14:00")) == utc(
        "2026-12-06T10:00:00"
    )


def test_daily_cron_runs_at_local_time_winter_and_summer() -> None:
    digest = Schedule("cron", "0 9 * * *", "Europe/Berlin")
    assert digest.latest_due(utc("2026-12-06T08:00:00")) == utc("2026-12-06T08:00:00")  # CET, UTC+1
    assert digest.latest_due(utc("2026-12-06T07:59:59")) == utc("2026-12-05T08:00:00")
    assert digest.next_after(utc("2026-12-06T08:00:00")) == utc("2026-12-07T08:00:00")
    assert digest.latest_due(utc("2026-07-01T12:00:00")) == utc("2026-07-01T07:00:00")  # CEST, UTC+2


def test_spring_forward_a_skipped_time_fires_once_at_the_first_minute_after_it() -> None:
    # Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 never exists.
    at_0230 = Schedule("cron", "30 2 * * *", "Europe/Berlin")
    assert at_0230.next_after(utc("2026-03-28T23:00:00")) == utc("2026-03-29T01:00:00")  # 03:00 CEST
    assert at_0230.latest_due(utc("2026-03-29T01:00:30")) == utc("2026-03-29T01:00:00")
    assert at_0230.latest_due(utc("2026-03-29T00:59:59")) == utc("2026-03-28T01:30:00")
    assert at_0230.next_after(utc("2026-03-29T01:00:00")) == utc("2026-03-30T00:30:00")  # 02:30 CEST


def test_fall_back_a_repeated_time_fires_once() -> None:
    # Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 happens twice.
    at_0230 = Schedule("cron", "30 2 * * *", "Europe/Berlin")
    assert at_0230.next_after(utc("2026-10-24T23:00:00")) == utc("2026-10-25T00:30:00")  # the first 02:30
    assert at_0230.next_after(utc("2026-10-25T00:30:00")) == utc("2026-10-26T01:30:00")  # not the second
    assert at_0230.latest_due(utc("2026-10-25T01:45:00")) == utc("2026-10-25T00:30:00")


def test_an_hourly_job_runs_every_real_hour_across_both_changes() -> None:
    hourly = Schedule("cron", "0 * * * *", "America/New_York")
    for start in (utc("2026-03-08T05:30:00"), utc("2026-11-01T04:30:00")):  # around 02:00 local, both changes
        slots = [hourly.next_after(start)]
        for _ in range(4):
            slots.append(hourly.next_after(slots[-1]))
        assert [b - a for a, b in itertools.pairwise(slots)] == [timedelta(hours=1)] * 4


@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC", "Asia/Kathmandu"]),
    st.sampled_from(["0 9 * * *", "30 2 * * *", "*/15 * * * *", "0 0 1 * *", "45 23 * * 1-5"]),
)
def test_the_latest_due_slot_is_the_one_before_the_next(now: datetime, zone: str, expression: str) -> None:
    schedule = Schedule("cron", expression, zone)
    latest = schedule.latest_due(now)
    assert latest <= now < schedule.next_after(now)
    assert schedule.next_after(latest) > now
    assert schedule.latest_due(latest) == latest


@pytest.mark.parametrize(
    ("kind", "expression", "zone"),
    [
        ("interval", "0", "UTC"),
        ("interval", "1.5", "UTC"),
        ("interval", "-5", "UTC"),
        ("cron", "0 9 * *", "UTC"),
        ("cron", "0 25 * * *", "UTC"),
        ("cron", "0 9 * * * *", "UTC"),
        ("cron", "0 9 * * *", "Mars/Olympus_Mons"),
    ],
)
def test_impossible_schedules_are_refused(kind: str, expression: str, zone: str) -> None:
    with pytest.raises(ScheduleError):
        Schedule(kind, expression, zone)  # type: ignore[arg-type]


def test_slots_are_named_by_their_utc_moment() -> None:
    assert slot_name(datetime.fromisoformat("2026-12-06T10:00:00+01:00")) == "20261206T090000Z"
    tick = SchedulerTickData(job="sla_check", slot="20261206T090000Z", scheduled_for=T0, fired_at=T0)
    assert tick_id(tick.job, tick.slot) == "sla_check:20261206T090000Z"
    SchedulerTick(id="sla_check:20261206T090000Z", producer="scheduler", data=tick)
    with pytest.raises(ValueError, match="id must be"):
        SchedulerTick(producer="scheduler", data=tick)  # a random id would let replicas store two


def test_a_manual_slot_carries_the_command_id_when_it_can() -> None:
    assert manual_slot("4f1c3c9e-7a2b-4d0e-9c1f-0a1b2c3d4e5f") == "manual-4f1c3c9e-7a2b-4d0e-9c1f-0a1b2c3d4e5f"
    odd = manual_slot("crm:run/42 by admin")
    assert odd.startswith("manual-")
    assert len(odd) == len("manual-") + 36
    assert manual_slot("crm:run/42 by admin") == odd


def test_done_beats_failed_and_the_later_outcome_wins() -> None:
    pending = FireOutcome("pending", None)
    failed = FireOutcome("failed", T0)
    done = FireOutcome("done", T0)
    assert outcome_supersedes(pending, "failed", T0)
    assert outcome_supersedes(failed, "done", T0 - timedelta(minutes=1))
    assert not outcome_supersedes(done, "failed", T0 + timedelta(minutes=1))
    assert not outcome_supersedes(done, "done", T0)  # a repeat
    assert outcome_supersedes(done, "done", T0 + timedelta(seconds=1))
    assert not outcome_supersedes(failed, "failed", T0 - timedelta(seconds=1))


def test_an_older_enable_or_disable_command_never_undoes_a_newer_one() -> None:
    assert command_applies(None, T0)
    assert command_applies(T0, T0 + timedelta(seconds=1))
    assert not command_applies(T0, T0)
    assert not command_applies(T0, T0 - timedelta(seconds=1))


def test_the_built_in_jobs_have_their_owners_and_the_digest_runs_at_the_configured_local_time() -> None:
    jobs = {job.name: job for job in builtin_jobs("07:45")}
    owners = {name: job.owner for name, job in jobs.items()}
    crm_jobs = ("sla_check", "tasks_due", "daily_digest", "meta_sync", "channel_health")
    assert {name: owners.get(name) for name in crm_jobs} == dict.fromkeys(crm_jobs, "crm")
    assert owners["ai.redo"] == "ai"
    digest = jobs["daily_digest"].schedule("Europe/Berlin")
    assert digest.latest_due(utc("2026-12-06T12:00:00")) == utc("2026-12-06T06:45:00")
    with pytest.raises(ValueError, match="job name"):
        JobDefinition("SLA check", "crm", "interval", "60", "")
    with pytest.raises(ScheduleError):
        JobDefinition("broken", "crm", "cron", "every day", "")
