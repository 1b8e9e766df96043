"""Fixtures of the scheduler's tests: a migrated schema of the test's own, a private
JetStream server, and scheduler processes built the way ``python -m scheduler`` builds
them (side by side, as replicas)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import nats
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.bus import EventPublisher, RetryPolicy
from jggl_common.db import autocommit, session_factory
from jggl_common.streams import ensure_streams
from jggl_common.testing import TEST_DATABASE_URL
from scheduler.config import SchedulerSettings
from scheduler.jobs.definitions import JobDefinition
from scheduler.migrate import upgrade
from scheduler.process import SchedulerService, build

APP_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
FAST_RETRIES = RetryPolicy(max_deliveries=3, backoff=(0.05, 0.1, 0.2))
BEAT = JobDefinition("beat", "crm", "interval", "1", "a one-second job for the tests")


@pytest_asyncio.fixture
async def engine(schema_engine: AsyncEngine, pg_schema: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh schema migrated to head."""
    await upgrade(schema_engine, pg_schema)
    yield schema_engine


class Bus:
    """The test's own JetStream server, as crm and the owners see it."""

    def __init__(self, url: str, nc: NatsClient) -> None:
        self.url = url
        self.nc = nc
        self.js = nc.jetstream()
        self.publisher = EventPublisher(nc)

    async def stored(self, stream: str, subject_prefix: str) -> list[tuple[str, dict[str, Any]]]:
        """``(Nats-Msg-Id, payload)`` of every message of ``stream`` whose subject starts
        with ``subject_prefix``, oldest first."""
        info = await self.js.stream_info(stream)
        found: list[tuple[str, dict[str, Any]]] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1 if info.state.messages else 0):
            msg = await self.js.get_msg(stream, seq)
            if (msg.subject or "").startswith(subject_prefix):
                found.append(((msg.headers or {}).get("Nats-Msg-Id", ""), json.loads(msg.data or b"null")))
        return found

    async def ticks(self, job: str) -> list[dict[str, Any]]:
        """Every tick of ``job`` in the SCHEDULER stream; each one's id is its Nats-Msg-Id."""
        found = await self.stored("SCHEDULER", f"scheduler.tick.{job}")
        assert all(msg_id == tick["id"] for msg_id, tick in found)
        return [tick for _, tick in found]

    async def job_updates(self, job: str) -> list[dict[str, Any]]:
        """The ``data`` of every ``scheduler.job.updated`` of ``job``, oldest first."""
        found = await self.stored("SCHEDULER", "scheduler.job.updated")
        return [event["data"] for _, event in found if event["data"]["name"] == job]

    async def handled(self, stream: str, durable: str) -> bool:
        """Whether the consumer ``durable`` has acknowledged everything in its stream."""
        info = await self.js.consumer_info(stream, durable)
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)


@pytest_asyncio.fixture
async def bus(private_nats: tuple[subprocess.Popen[bytes], int]) -> AsyncIterator[Bus]:
    url = f"nats://127.0.0.1:{private_nats[1]}"
    nc = await nats.connect(url)
    try:
        await ensure_streams(nc.jetstream())
        yield Bus(url, nc)
    finally:
        await nc.close()


def scheduler_settings(pg_schema: str, bus: Bus, **overrides: Any) -> SchedulerSettings:
    values: dict[str, Any] = {
        "app_key": APP_KEY,
        "nats_url": bus.url,
        "app_url": "http://localhost:8000",
        "database_url": TEST_DATABASE_URL,
        "db_schema": pg_schema,
        "scheduler_loop_seconds": 0.25,
        "settings_bucket": f"SETTINGS_{pg_schema}",
    }
    values.update(overrides)
    return SchedulerSettings(_env_file=None, **values)


StartScheduler = Callable[..., Awaitable[SchedulerService]]


@pytest_asyncio.fixture
async def start_scheduler(engine: AsyncEngine, pg_schema: str, bus: Bus) -> AsyncIterator[StartScheduler]:
    """Start scheduler replicas keeping ``jobs`` (BEAT by default); all stopped at the end."""
    started: list[SchedulerService] = []

    async def start(jobs: list[JobDefinition] | None = None, **overrides: Any) -> SchedulerService:
        settings = scheduler_settings(pg_schema, bus, **overrides)
        # Each replica has its own pool, as separate processes would.
        replica_engine = engine if not started else None
        service = await build(settings, engine=replica_engine, jobs=jobs or [BEAT], policy=FAST_RETRIES)
        await service.start()
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in started:
            await service.stop()


async def rows(engine: AsyncEngine, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with autocommit(session_factory(engine)) as db:
        return [dict(row) for row in await db.fetch(sql, *args)]


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    """Poll ``check`` until it answers something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached within {timeout}s; last seen: {last!r}")


async def wall_clock_passes(moment: datetime) -> None:
    """Wait until the wall clock is past ``moment`` (slots up to it have come due)."""
    while datetime.now(UTC) <= moment:
        await asyncio.sleep(0.05)
