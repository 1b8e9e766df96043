"""crm and the scheduler, for real: ticks on a JetStream server of the test's own become
crm's work and its reported outcome; the jobs the scheduler announces are what admins see
at /api/jobs, and their commands go back to the scheduler."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.api import create_app
from crm.jobs.subscribers import ACK_MARGIN_SECONDS, tick_durable
from crm.jobs.work import JOB_SECONDS
from crm.models import Task, User
from crm.worker import register_jobs
from jggl_common.bus import EventPublisher, RetryPolicy, ServiceBus
from jggl_common.contracts import (
    Envelope,
    JobUpdated,
    JobUpdatedData,
    SchedulerTick,
    SchedulerTickData,
    tick_id,
    tick_subject,
    utcnow,
)
from jggl_common.db import session_scope
from jggl_common.outbox import Outbox
from jggl_common.streams import SCHEDULER, ensure_streams
from jggl_common.testing import start_nats_server, stored_events, wait_consumers_idle

from ..api.factories import create_deal, create_user
from ..support import API_REDIS_URL, crm_settings, random_address


@dataclass
class World:
    app: FastAPI
    client: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    publisher: EventPublisher
    js: Any
    admin: User

    def headers(self, user: User | None = None) -> dict[str, str]:
        user = user or self.admin
        assert user.id is not None
        return {"Authorization": f"Bearer {self.app.state.crm.tokens.issue(user.id, user.password_hash)}"}

    async def publish(self, *events: Envelope) -> None:
        """Publish as the scheduler does (a tick on ``scheduler.tick.<job>``)."""
        for event in events:
            subject = tick_subject(event.data.job) if isinstance(event, SchedulerTick) else None
            await self.publisher.publish(event, subject)

    async def events(self, subject: str, *, idle: float = 0.3) -> list[dict[str, Any]]:
        return await stored_events(self.js, subject, idle=idle)

    async def settled(self) -> None:
        """Wait until crm's tick consumers acknowledged every tick (their work is committed)."""
        await wait_consumers_idle(self.js, SCHEDULER.name, "crm-tick-")

    async def eventually(self, subject: str, count: int) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            found = await self.events(subject, idle=0.1)
            if len(found) >= count or asyncio.get_running_loop().time() > deadline:
                return found
            await asyncio.sleep(0.1)


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest_asyncio.fixture
async def world(
    tmp_path: Path, pg_schema: str, crm_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[World]:
    proc, port = start_nats_server(tmp_path / "jetstream")
    url = f"nats://127.0.0.1:{port}"
    nc = await nats.connect(url)
    await ensure_streams(nc.jetstream())
    bus = ServiceBus(url, "crmtest" + secrets.token_hex(3))
    await bus.broker.connect()
    outbox = Outbox(sessions, bus.publisher)
    register_jobs(
        bus,
        sessions,
        outbox,
        crm_settings(pg_schema, nats_url=url),
        policy=RetryPolicy(max_deliveries=2, backoff=(0.1,)),
    )
    await bus.broker.start()
    redis = Redis.from_url(API_REDIS_URL)
    app = create_app(crm_settings(pg_schema, nats_url=url), engine=crm_engine, redis=redis, outbox=outbox)
    async with session_scope(sessions) as session:
        admin = await create_user(session, role="admin")
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(random_address(), 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://crm.test", timeout=30) as client:
                yield World(app, client, sessions, EventPublisher(nc), nc.jetstream(), admin)
    finally:
        await bus.broker.stop()
        await nc.close()
        await redis.aclose()
        proc.terminate()
        proc.wait(10)


def tick(job: str, slot: str | None = None, *, at: datetime | None = None) -> SchedulerTick:
    at = at or utcnow()
    slot = slot or at.strftime("%Y%m%dT%H%M%SZ")
    return SchedulerTick(
        id=tick_id(job, slot),
        producer="scheduler",
        data=SchedulerTickData(job=job, slot=slot, scheduled_for=at, fired_at=at),
    )


def announced(name: str, revision: int, *, enabled: bool = True) -> JobUpdated:
    return JobUpdated(
        id=f"job-updated:{name}:{revision}",
        producer="scheduler",
        data=JobUpdatedData(
            name=name,
            kind="interval",
            expression="60",
            timezone="UTC",
            owner="crm",
            description="Announce deals whose customer waits past the SLA",
            enabled=enabled,
            revision=revision,
            next_run=utcnow() + timedelta(seconds=60) if enabled else None,
            last_run=None,
            last_outcome=None,
            last_success_at=None,
            updated_at=utcnow(),
        ),
    )


async def test_a_tick_runs_crm_s_job_once_and_reports_its_outcome(world: World) -> None:
    long_ago = utcnow() - timedelta(days=30)
    async with session_scope(world.sessions) as session:
        manager = await create_user(session)
        late = await create_deal(session, assignee=manager, awaiting_reply_since=long_ago)
        await create_deal(session, awaiting_reply_since=None)
    first = tick("sla_check")
    await world.publish(first, first)  # two replicas fire the same slot: JetStream keeps one
    await world.settled()
    breaches = await world.events("crm.deal.sla_breached")
    assert sorted((e["data"]["deal"]["id"], e["data"]["level"]) for e in breaches) == [
        (late.id, "breach"),
        (late.id, "escalation"),
    ]
    [finished] = await world.eventually("crm.job.finished", 1)
    assert finished["data"]["job"] == "sla_check"
    assert finished["data"]["slot"] == first.data.slot
    assert finished["data"]["status"] == "done"
    assert finished["data"]["counts"] == {"breaches": 1, "escalations": 1}
    # The next slot finds nothing new to announce.
    second = tick("sla_check", at=utcnow() + timedelta(minutes=1))
    await world.publish(second)
    await world.settled()
    assert len(await world.events("crm.deal.sla_breached")) == 2
    outcomes = await world.eventually("crm.job.finished", 2)
    assert [o["data"]["counts"] for o in outcomes] == [
        {"breaches": 1, "escalations": 1},
        {"breaches": 0, "escalations": 0},
    ]


async def test_due_tasks_and_digests_on_their_ticks(world: World) -> None:
    async with session_scope(world.sessions) as session:
        manager = await create_user(session, name="Digest Dora")
        deal = await create_deal(session, assignee=manager, awaiting_reply_since=utcnow() - timedelta(hours=1))
        assert deal.id is not None
        session.add(Task(deal_id=deal.id, title="Send the catalogue", due_at=utcnow() - timedelta(minutes=1)))
    await world.publish(tick("tasks_due"), tick("daily_digest"))
    await world.settled()
    [due] = await world.events("crm.task.due")
    assert due["data"]["title"] == "Send the catalogue"
    digests = {d["data"]["user_id"]: d["data"] for d in await world.events("crm.digest.daily")}
    assert digests[manager.id]["awaiting_reply"] == 1
    assert world.admin.id in digests
    outcomes = {o["data"]["job"]: o["data"] for o in await world.eventually("crm.job.finished", 2)}
    assert outcomes["tasks_due"]["counts"] == {"tasks": 1}
    assert outcomes["daily_digest"]["counts"]["digests"] >= 2


async def test_ticks_of_other_services_jobs_are_left_to_them_and_malformed_ones_go_to_the_dlq(world: World) -> None:
    await world.publish(tick("ai.redo"))
    await world.publisher.publish_raw([("scheduler.tick.sla_check", b'{"type": "scheduler.tick", "data": {}}', {})])
    await world.settled()
    assert await world.events("crm.job.finished") == []
    [letter] = await world.eventually("dlq.>", 1)
    assert letter["data"]["original_subject"] == "scheduler.tick.sla_check"


async def test_admins_see_the_announced_jobs_and_run_or_switch_them(world: World) -> None:
    # Revisions arrive out of order: the highest is kept.
    await world.publish(announced("sla_check", 3, enabled=False), announced("sla_check", 2), announced("tasks_due", 1))
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        listed = await world.client.get("/api/jobs", headers=world.headers())
        assert listed.status_code == 200, listed.text
        jobs = {job["name"]: job for job in listed.json()["items"]}
        if len(jobs) == 2 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert jobs["sla_check"]["revision"] == 3
    assert jobs["sla_check"]["enabled"] is False
    assert jobs["sla_check"]["next_run"] is None
    async with session_scope(world.sessions) as session:
        manager = await create_user(session)
    assert (await world.client.get("/api/jobs", headers=world.headers(manager))).status_code == 403
    assert (await world.client.post("/api/jobs/sla_check/run", headers=world.headers(manager))).status_code == 403
    assert (await world.client.post("/api/jobs/no_such_job/run", headers=world.headers())).status_code == 404
    assert (await world.client.post("/api/jobs/Bad Name!/run", headers=world.headers())).status_code == 422

    ran = await world.client.post("/api/jobs/sla_check/run", headers=world.headers())
    assert ran.status_code == 202, ran.text
    [command] = await world.eventually("scheduler.cmd.run_job", 1)
    assert command["id"] == ran.json()["command_id"]
    assert command["data"] == {"job": "sla_check", "requested_by_user_id": world.admin.id, "params": {}}

    switched = await world.client.patch("/api/jobs/sla_check", json={"enabled": True}, headers=world.headers())
    assert switched.status_code == 202, switched.text
    [switch] = await world.eventually("scheduler.cmd.set_job_enabled", 1)
    assert switch["data"]["enabled"] is True
    bad = await world.client.patch("/api/jobs/sla_check", json={"enabled": "maybe"}, headers=world.headers())
    assert bad.status_code == 422
    async with world.sessions() as session:
        audit = (await session.execute(text("SELECT action, key FROM audit_log ORDER BY id"))).all()
    assert [tuple(row) for row in audit] == [("job.run", "sla_check"), ("job.enabled", "sla_check")]


def test_slot_format_is_the_scheduler_s() -> None:
    assert tick("sla_check", at=datetime(2026, 12, 6, 9, 0, tzinfo=UTC)).id == "sla_check:20261206T090000Z"


async def test_each_job_has_a_consumer_of_its_own_that_waits_out_its_budget(world: World) -> None:
    consumers = {info.name: info.config for info in await world.js.consumers_info(SCHEDULER.name)}
    ticks = {name: config for name, config in consumers.items() if name.startswith("crm-tick-")}
    assert set(ticks) == {tick_durable(job) for job in ("sla_check", "tasks_due", "daily_digest", "channel_health")}
    assert ticks["crm-tick-sla_check"].filter_subject == "scheduler.tick.sla_check"
    # A run still working is never delivered again to another replica mid-way.
    assert ticks["crm-tick-sla_check"].ack_wait == JOB_SECONDS["sla_check"] + ACK_MARGIN_SECONDS
    assert ticks["crm-tick-channel_health"].ack_wait == JOB_SECONDS["channel_health"] + ACK_MARGIN_SECONDS
