"""The scheduler against a real PostgreSQL and its own JetStream server: replicas side by
side fire each slot once, an outage fires the latest missed slot once, admins' commands
run and switch jobs, owners' outcomes are recorded once, and bad input goes to the DLQ."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.bus import EventPublisher
from jggl_common.contracts import (
    JobFinished,
    JobFinishedData,
    RunJobCommand,
    RunJobCommandData,
    SetJobEnabledCommand,
    SetJobEnabledCommandData,
    job_finished_subject,
)
from jggl_common.db import session_factory
from jggl_common.outbox import Outbox
from scheduler.jobs.definitions import JobDefinition
from scheduler.jobs.service import Scheduler

from .conftest import Bus, StartScheduler, rows, until, wall_clock_passes


def slots(ticks: list[dict[str, object]]) -> list[str]:
    return [str(tick["data"]["slot"]) for tick in ticks]  # type: ignore[index]


async def test_replicas_side_by_side_fire_each_slot_once(
    start_scheduler: StartScheduler, bus: Bus, engine: AsyncEngine
) -> None:
    first = await start_scheduler()
    await start_scheduler()
    await until(lambda: _at_least(bus, 4))

    # One replica goes away and comes back while the other keeps time.
    await first.stop()
    seen = len(await bus.ticks("beat"))
    await until(lambda: _at_least(bus, seen + 2))
    await start_scheduler()
    seen = len(await bus.ticks("beat"))
    await until(lambda: _at_least(bus, seen + 4))

    ticks = await bus.ticks("beat")
    assert len(set(slots(ticks))) == len(ticks), "a slot was ticked twice"
    assert all(tick["id"] == f"beat:{tick['data']['slot']}" for tick in ticks)
    assert not any(tick["data"]["manual"] for tick in ticks)
    fired = await rows(engine, "SELECT slot FROM fires WHERE job = 'beat'")
    assert sorted(row["slot"] for row in fired) == sorted(slots(ticks)), "each fire row has its tick and back"


async def _at_least(bus: Bus, count: int) -> bool:
    return len(await bus.ticks("beat")) >= count


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def replica(engine: AsyncEngine, publisher: EventPublisher, clock: FakeClock, job: JobDefinition) -> Scheduler:
    """A scheduler on an injected clock, over the real database and broker."""
    return Scheduler(Outbox(session_factory(engine), publisher), [job], lambda: "Europe/Berlin", clock=clock)


async def test_a_slot_missed_while_every_replica_was_down_fires_once_on_return(engine: AsyncEngine, bus: Bus) -> None:
    digest = JobDefinition("digest", "crm", "cron", "0 9 * * *", "daily at 09:00 Berlin")
    clock = FakeClock(datetime(2026, 12, 6, 7, 0, tzinfo=UTC))  # 08:00 in Berlin
    before = replica(engine, bus.publisher, clock, digest)
    await before.seed()
    assert await before.fire_due() == 0  # yesterday's 09:00 came before the job existed

    # Every replica is down from 08:00 to 16:00 Berlin, and two of them come back at once.
    clock.now = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)
    back = [replica(engine, bus.publisher, clock, digest) for _ in range(2)]
    fired = [await scheduler.fire_due() for scheduler in back]
    assert sorted(fired) == [0, 1]
    assert [await s.fire_due() for s in back] == [0, 0]

    # An interval job down for five slots fires only the latest of them.
    every_minute = JobDefinition("minutely", "crm", "interval", "60", "every minute")
    clock.now = datetime(2026, 12, 6, 15, 0, 30, tzinfo=UTC)
    minutely = replica(engine, bus.publisher, clock, every_minute)
    await minutely.seed()
    assert await minutely.fire_due() == 0  # 15:00:00 came before the job existed
    clock.now = datetime(2026, 12, 6, 15, 1, 5, tzinfo=UTC)
    assert await minutely.fire_due() == 1
    clock.now = datetime(2026, 12, 6, 15, 6, 59, tzinfo=UTC)
    assert await replica(engine, bus.publisher, clock, every_minute).fire_due() == 1

    ticks = await until(lambda: _ticks(bus, "digest", "minutely", count=3))
    assert [(t["id"], t["data"]["scheduled_for"], t["data"]["fired_at"]) for t in ticks] == [
        ("digest:20261206T080000Z", "2026-12-06T08:00:00Z", "2026-12-06T15:00:00Z"),
        ("minutely:20261206T150100Z", "2026-12-06T15:01:00Z", "2026-12-06T15:01:05Z"),
        ("minutely:20261206T150600Z", "2026-12-06T15:06:00Z", "2026-12-06T15:06:59Z"),
    ]


async def _ticks(bus: Bus, *jobs: str, count: int) -> list[dict[str, object]] | None:
    found = [tick for job in jobs for tick in await bus.ticks(job)]
    return found if len(found) >= count else None


async def test_a_job_switched_back_on_fires_from_then_not_the_slots_it_missed(engine: AsyncEngine, bus: Bus) -> None:
    job = JobDefinition("minutely", "crm", "interval", "60", "every minute")
    clock = FakeClock(datetime(2026, 12, 6, 10, 0, 30, tzinfo=UTC))
    scheduler = replica(engine, bus.publisher, clock, job)
    await scheduler.seed()
    off = SetJobEnabledCommand(
        producer="crm", occurred_at=clock.now, data=SetJobEnabledCommandData(job="minutely", enabled=False)
    )
    assert await scheduler.set_enabled(off)
    clock.now = datetime(2026, 12, 6, 10, 5, 30, tzinfo=UTC)
    assert await scheduler.fire_due() == 0
    on = SetJobEnabledCommand(
        producer="crm", occurred_at=clock.now, data=SetJobEnabledCommandData(job="minutely", enabled=True)
    )
    assert await scheduler.set_enabled(on)
    assert not await scheduler.set_enabled(off), "an older command arriving late changes nothing"
    assert await scheduler.fire_due() == 0, "10:05 was missed while off"
    clock.now = datetime(2026, 12, 6, 10, 6, 0, tzinfo=UTC)
    assert await scheduler.fire_due() == 1


async def test_run_now_gives_one_manual_tick_with_its_params(start_scheduler: StartScheduler, bus: Bus) -> None:
    await start_scheduler()
    command = RunJobCommand(
        producer="crm",
        data=RunJobCommandData(job="beat", requested_by_user_id=7, params={"since": "2026-12-01T00:00:00Z"}),
    )
    await bus.publisher.publish(command)
    await _redeliver(bus.publisher, command)

    manual = await until(lambda: _manual_ticks(bus))
    assert len(manual) == 1
    tick = manual[0]
    assert tick["id"] == f"beat:manual-{command.id}"
    assert tick["data"]["requested_by_user_id"] == 7
    assert tick["data"]["params"] == {"since": "2026-12-01T00:00:00Z"}
    await until(lambda: bus.handled("SCHEDULER", "scheduler-commands"))
    assert len(await _manual_ticks(bus)) == 1
    updates = await bus.job_updates("beat")
    assert any(u["last_run"] and u["last_run"]["slot"] == f"manual-{command.id}" for u in updates)


async def _manual_ticks(bus: Bus) -> list[dict[str, object]]:
    return [tick for tick in await bus.ticks("beat") if tick["data"]["manual"]]


async def _redeliver(publisher: EventPublisher, event: RunJobCommand | JobFinished, subject: str | None = None) -> None:
    """The same event again under another message id, as a redelivery after JetStream's
    duplicate window would come."""
    await publisher.publish_raw(
        [(subject or event.subject, event.model_dump_json().encode(), {"Nats-Msg-Id": f"again-{event.id}"})]
    )


async def test_disable_stops_the_ticks_and_enable_resumes_them(start_scheduler: StartScheduler, bus: Bus) -> None:
    await start_scheduler()
    await until(lambda: _at_least(bus, 1))
    await bus.publisher.publish(
        SetJobEnabledCommand(producer="crm", data=SetJobEnabledCommandData(job="beat", enabled=False))
    )
    state = await until(lambda: _latest_update(bus, lambda u: not u["enabled"]))
    assert state["next_run"] is None
    off_at = datetime.fromisoformat(state["updated_at"])

    await wall_clock_passes(off_at + timedelta(seconds=3))
    # A pass that read the job before the switch may still fire the slot it was on.
    late = [t for t in await bus.ticks("beat") if datetime.fromisoformat(t["data"]["scheduled_for"]) > off_at]
    assert len(late) <= 1

    await bus.publisher.publish(
        SetJobEnabledCommand(producer="crm", data=SetJobEnabledCommandData(job="beat", enabled=True))
    )
    state = await until(lambda: _latest_update(bus, lambda u: u["enabled"] is True))
    on_at = datetime.fromisoformat(state["updated_at"])
    resumed = await until(lambda: _ticks_after(bus, on_at))
    assert resumed


async def _latest_update(bus: Bus, wanted: Callable[[dict[str, object]], bool]) -> dict[str, object] | None:
    updates = await bus.job_updates("beat")
    latest = max(updates, key=lambda u: u["revision"]) if updates else None
    return latest if latest is not None and wanted(latest) else None


async def _ticks_after(bus: Bus, moment: datetime) -> list[dict[str, object]]:
    return [t for t in await bus.ticks("beat") if datetime.fromisoformat(t["data"]["scheduled_for"]) >= moment]


async def test_an_outcome_is_recorded_on_its_fire_once(
    start_scheduler: StartScheduler, bus: Bus, engine: AsyncEngine
) -> None:
    await start_scheduler()
    (tick,) = (await until(lambda: bus.ticks("beat")))[:1]
    slot = tick["data"]["slot"]
    started = datetime.now(UTC)
    done = JobFinished(
        id=f"beat:{slot}:done",
        producer="crm",
        data=JobFinishedData(
            job="beat",
            slot=slot,
            status="done",
            counts={"breaches": 2},
            started_at=started,
            finished_at=started + timedelta(seconds=1),
        ),
    )
    await bus.publisher.publish(done, job_finished_subject("crm"))
    recorded = await until(lambda: _fire(engine, slot, "done"))
    assert recorded["counts"] == {"breaches": 2}
    state = await until(lambda: _latest_update(bus, lambda u: bool(u["last_outcome"])))
    assert state["last_outcome"]["slot"] == slot
    assert state["last_success_at"] is not None
    revision = (await rows(engine, "SELECT revision FROM jobs WHERE name = 'beat'"))[0]["revision"]
    updates = len(await bus.job_updates("beat"))

    # The same outcome again, and a late failure of the same slot: nothing changes.
    await _redeliver(bus.publisher, done, job_finished_subject("crm"))
    failed = JobFinished(
        id=f"beat:{slot}:failed",
        producer="crm",
        data=JobFinishedData(
            job="beat",
            slot=slot,
            status="failed",
            error="boom",
            started_at=started,
            finished_at=started + timedelta(seconds=5),
        ),
    )
    await bus.publisher.publish(failed, job_finished_subject("crm"))
    await until(lambda: bus.handled("CRM", "scheduler-outcomes-crm"))
    assert await _fire(engine, slot, "done") == recorded
    outcome_updates = [u for u in (await bus.job_updates("beat"))[updates:] if u["revision"] <= revision]
    assert outcome_updates == [], "a repeat announced a change"


async def _fire(engine: AsyncEngine, slot: str, status: str) -> dict[str, object] | None:
    found = await rows(
        engine, "SELECT status, counts, error, finished_at FROM fires WHERE job = 'beat' AND slot = $1", slot
    )
    if not found or found[0]["status"] != status:
        return None
    found[0]["counts"] = json.loads(found[0]["counts"]) if isinstance(found[0]["counts"], str) else found[0]["counts"]
    return found[0]


async def test_malformed_commands_and_outcomes_go_to_the_dlq_and_nothing_stops(
    start_scheduler: StartScheduler, bus: Bus
) -> None:
    service = await start_scheduler()
    publish = bus.publisher.publish_raw
    await publish([("scheduler.cmd.run_job", b"{not json", {"Nats-Msg-Id": "bad-1"})])
    await publish(
        [("scheduler.cmd.run_job", b'{"type": "scheduler.cmd.run_job", "data": {}}', {"Nats-Msg-Id": "bad-2"})]
    )
    await bus.publisher.publish(RunJobCommand(producer="crm", data=RunJobCommandData(job="no_such_job")))
    await publish([("scheduler.cmd.explode", b'{"type": "scheduler.cmd.explode"}', {"Nats-Msg-Id": "bad-3"})])
    never_fired = JobFinished(
        producer="crm",
        data=JobFinishedData(
            job="beat",
            slot="19700101T000000Z",
            status="done",
            started_at=datetime.now(UTC),
            finished_at=datetime.now(UTC),
        ),
    )
    await bus.publisher.publish(never_fired, job_finished_subject("crm"))

    letters = await until(lambda: _dead_letters(bus, 5))
    errors = " | ".join(letter["data"]["error"] for letter in letters)
    assert "no job called 'no_such_job'" in errors
    assert "not a scheduler command" in errors
    assert "slot never fired: beat:19700101T000000Z" in errors
    assert {letter["data"]["consumer"] for letter in letters} == {"scheduler-commands", "scheduler-outcomes-crm"}

    # Still keeping time and taking commands.
    command = RunJobCommand(producer="crm", data=RunJobCommandData(job="beat"))
    await bus.publisher.publish(command)
    await until(lambda: _manual_ticks(bus))
    assert await service.ready()


async def _dead_letters(bus: Bus, count: int) -> list[dict[str, object]] | None:
    found = [event for _, event in await bus.stored("DLQ", "dlq.scheduler.")]
    return found if len(found) >= count else None


async def test_old_fires_are_deleted_but_each_jobs_newest_run_and_outcome_stay(engine: AsyncEngine, bus: Bus) -> None:
    reported = JobDefinition("reported", "crm", "interval", "60", "its owner reports")
    silent = JobDefinition("silent", "crm", "interval", "60", "nobody handles it")
    clock = FakeClock(datetime(2026, 1, 1, 10, 0, 30, tzinfo=UTC))
    scheduler = Scheduler(
        Outbox(session_factory(engine), bus.publisher),
        [reported, silent],
        lambda: "UTC",
        clock=clock,
        history=timedelta(days=30),
    )
    await scheduler.seed()
    for minute in range(1, 5):  # 10:01 .. 10:04 for both jobs
        clock.now = datetime(2026, 1, 1, 10, minute, 5, tzinfo=UTC)
        assert await scheduler.fire_due() == 2
    outcome = JobFinished(
        producer="crm",
        data=JobFinishedData(
            job="reported", slot="20260101T100200Z", status="done", started_at=clock.now, finished_at=clock.now
        ),
    )
    assert await scheduler.record_outcome(outcome, "crm")

    clock.now = datetime(2026, 3, 1, tzinfo=UTC)
    assert await scheduler.prune(batch=2) == 5
    left = await rows(engine, "SELECT job, slot FROM fires ORDER BY job, slot")
    assert [(row["job"], row["slot"]) for row in left] == [
        ("reported", "20260101T100200Z"),  # its newest outcome
        ("reported", "20260101T100400Z"),  # its newest run
        ("silent", "20260101T100400Z"),
    ]
    assert await scheduler.prune() == 0
