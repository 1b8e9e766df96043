"""crm's daily retention (``retention.crm``) for real: a tick on a JetStream server of the
test's own prunes crm's old rows, keeps the recent and the still-needed ones, and reports
the counts per table as ``crm.job.finished``; the same tick again is harmless."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.jobs.retention import RETENTION_DURABLE
from crm.worker import register_jobs
from jggl_common.bus import EventPublisher, RetryPolicy, ServiceBus
from jggl_common.contracts import SchedulerTick, SchedulerTickData, tick_id, tick_subject, utcnow
from jggl_common.db import autocommit, session_scope
from jggl_common.outbox import Outbox
from jggl_common.retention import retention_job
from jggl_common.streams import SCHEDULER, ensure_streams
from jggl_common.testing import start_nats_server

from ..api.factories import create_deal, create_user
from ..support import crm_settings

JOB = retention_job("crm")


@dataclass
class World:
    sessions: async_sessionmaker[AsyncSession]
    publisher: EventPublisher
    js: Any

    async def tick(self, slot: str) -> SchedulerTick:
        at = utcnow()
        tick = SchedulerTick(
            id=tick_id(JOB, slot),
            producer="scheduler",
            data=SchedulerTickData(job=JOB, slot=slot, scheduled_for=at, fired_at=at),
        )
        await self.publisher.publish(tick, tick_subject(JOB))
        return tick

    async def settled(self) -> None:
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            stream = await self.js.stream_info(SCHEDULER.name)
            info = await self.js.consumer_info(SCHEDULER.name, RETENTION_DURABLE)
            if not info.num_pending and not info.num_ack_pending and info.delivered.stream_seq >= stream.state.last_seq:
                return
            assert asyncio.get_running_loop().time() < deadline, "the retention consumer did not catch up"
            await asyncio.sleep(0.05)

    async def finished(self, count: int) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            sub = await self.js.subscribe(
                "crm.job.finished", ordered_consumer=True, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
            )
            found = []
            try:
                while True:
                    try:
                        msg = await sub.next_msg(timeout=0.2)
                    except nats.errors.TimeoutError:
                        break
                    found.append(json.loads(msg.data))
            finally:
                await sub.unsubscribe()
            if len(found) >= count or asyncio.get_running_loop().time() > deadline:
                return found
            await asyncio.sleep(0.1)

    async def values(self, sql: str) -> list[Any]:
        async with autocommit(self.sessions) as db:
            return [row[0] for row in await db.fetch(sql)]


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest_asyncio.fixture
async def world(tmp_path: Path, pg_schema: str, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[World]:
    proc, port = start_nats_server(tmp_path / "jetstream")
    url = f"nats://127.0.0.1:{port}"
    nc = await nats.connect(url)
    await ensure_streams(nc.jetstream())
    bus = ServiceBus(url, "crmtest" + secrets.token_hex(3))
    await bus.broker.connect()
    settings = crm_settings(pg_schema, nats_url=url, outbox_retention_hours=24, system_log_retention_days=90)
    register_jobs(bus, sessions, Outbox(sessions, bus.publisher), settings, policy=RetryPolicy(2, (0.1,)))
    await bus.broker.start()
    try:
        yield World(sessions, EventPublisher(nc), nc.jetstream())
    finally:
        await bus.broker.stop()
        await nc.close()
        proc.terminate()
        proc.wait(10)


async def seed(world: World) -> None:
    """Old and recent rows of every table crm prunes, old ones first (as they were written)."""
    now = utcnow()
    days = lambda n: now - timedelta(days=n)  # noqa: E731
    async with session_scope(world.sessions) as session:
        user = await create_user(session)
        deal = await create_deal(session)
    async with autocommit(world.sessions) as db:
        outbox = (
            "INSERT INTO outbox (event_id, subject, payload, created_at, published_at) VALUES ($1, 's', '{}', $2, $3)"
        )
        await db.execute(outbox, "old-published", days(3), days(3))
        await db.execute(outbox, "old-unpublished", days(3), None)  # the relay still owes it
        await db.execute(outbox, "recent", now - timedelta(hours=2), now - timedelta(hours=2))
        pending = (
            "INSERT INTO pending_updates (mid, kind, dedupe_key, payload, occurred_at)"
            " VALUES ($1, 'reaction', $1, '{}', $2)"
        )
        await db.execute(pending, "m_old", days(10))
        await db.execute(pending, "m_recent", days(1))
        receipt = "INSERT INTO receipts (conversation_id, kind, watermark, occurred_at) VALUES ($1, 'read', $2, $2)"
        await db.execute(receipt, deal.conversation_id, days(10))
        await db.execute(receipt, deal.conversation_id, days(1))
        log = (
            "INSERT INTO system_log (occurred_at, recorded_at, kind, source, message, details)"
            " VALUES ($1, $1, 'dead_letter', 'ai', $2, '{}')"
        )
        await db.execute(log, days(120), "old letter")
        await db.execute(log, days(5), "recent letter")
        code = "INSERT INTO telegram_link_codes (user_id, code_hash, created_at, expires_at) VALUES ($1, $2, $3, $3)"
        await db.execute(code, user.id, "a" * 64, days(3))  # expired days ago
        await db.execute(code, user.id, "b" * 64, now + timedelta(minutes=10))  # still usable


async def test_retention_tick_prunes_old_rows_keeps_the_rest_and_reports_counts(world: World) -> None:
    await seed(world)

    first = await world.tick("20261207T023000Z")
    await world.settled()

    assert sorted(await world.values("SELECT event_id FROM outbox WHERE subject = 's'")) == [
        "old-unpublished",
        "recent",
    ]
    assert await world.values("SELECT mid FROM pending_updates") == ["m_recent"]
    [kept_receipt] = await world.values("SELECT occurred_at FROM receipts")
    assert isinstance(kept_receipt, datetime)
    assert kept_receipt > utcnow() - timedelta(days=2)
    assert await world.values("SELECT message FROM system_log") == ["recent letter"]
    assert await world.values("SELECT code_hash FROM telegram_link_codes") == ["b" * 64]

    [finished] = await world.finished(1)
    assert finished["type"] == "job.finished"
    assert finished["producer"] == "crm"
    assert finished["data"]["job"] == JOB == "retention.crm"
    assert finished["data"]["slot"] == first.data.slot
    assert finished["data"]["status"] == "done"
    assert finished["data"]["counts"] == {
        "outbox": 1,
        "pending_updates": 1,
        "receipts": 1,
        "system_log": 1,
        "telegram_link_codes": 1,
        "unfinished": 0,
    }

    # The same tick again (a redelivery, a second replica): nothing more goes, and the
    # outcome it reports has the same id, so it is not announced twice.
    stream_before = await world.js.stream_info(SCHEDULER.name)
    await world.publisher.publish_raw(
        [(tick_subject(JOB), first.model_dump_json().encode(), {"Nats-Msg-Id": first.id + ":again"})]
    )
    await world.settled()
    assert (await world.js.stream_info(SCHEDULER.name)).state.last_seq == stream_before.state.last_seq + 1
    assert await world.values("SELECT count(*) FROM pending_updates") == [1]
    assert await world.values("SELECT count(*) FROM system_log") == [1]
    assert len(await world.finished(2)) == 1
