"""Fixtures of the scheduler's tests: a migrated schema of the test's own, a private
JetStream server, and scheduler processes built the way ``python -m scheduler`` builds
them (side by side, as replicas)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common import testing
from jggl_common.bus import RetryPolicy
from jggl_common.testing import TEST_DATABASE_URL, Replicas, connected_bus
from scheduler.config import SchedulerSettings
from scheduler.jobs.definitions import JobDefinition
from scheduler.migrate import upgrade
from scheduler.process import SchedulerService, build

APP_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
FAST_RETRIES = RetryPolicy(max_deliveries=3, backoff=(0.05, 0.1, 0.2))
BEAT = JobDefinition("beat", "crm", "interval", "1", "a one-second job for the tests")
# The tests take these from here.
rows = testing.rows
until = testing.eventually


engine = testing.migrated_engine(upgrade)
"""An engine on the test's fresh schema migrated to head."""


class Bus(testing.Bus):
    """The test's own JetStream server, as crm and the owners see it."""

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
    async with connected_bus(private_nats[1], Bus) as bus:
        yield bus


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
    async with Replicas[SchedulerService]() as replicas:

        async def start(jobs: list[JobDefinition] | None = None, **overrides: Any) -> SchedulerService:
            settings = scheduler_settings(pg_schema, bus, **overrides)
            # Each replica has its own pool, as separate processes would.
            replica_engine = engine if not replicas.started else None
            service = await build(settings, engine=replica_engine, jobs=jobs or [BEAT], policy=FAST_RETRIES)
            return await replicas.start(service)

        yield start


async def wall_clock_passes(moment: datetime) -> None:
    """Wait until the wall clock is past ``moment`` (slots up to it have come due)."""
    while datetime.now(UTC) <= moment:
        await asyncio.sleep(0.05)
