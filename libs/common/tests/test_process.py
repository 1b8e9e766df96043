"""A background service's lifecycle against the real PostgreSQL and NATS: it waits for its
schema, follows the live settings it reads, answers readiness, stops what it started, and
runs as an ASGI app whose ``/readyz`` tells required dependencies from optional ones."""

from __future__ import annotations

import asyncio
import base64
import gc
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from jggl_common.bus import ServiceBus
from jggl_common.db import create_engine
from jggl_common.live_settings import LiveSettings
from jggl_common.migrations import upgrade
from jggl_common.process import BackgroundService, cancel_tasks, service_app
from jggl_common.settings import ServiceSettings
from jggl_common.testing import TEST_DATABASE_URL, TEST_NATS_URL, probe_readiness

APP_KEY = base64.b64encode(os.urandom(32)).decode()


@dataclass
class Beats(BackgroundService):
    """A background service that counts beats while it runs (it follows the scheduler's
    live settings: ``business.timezone``)."""

    settings: ServiceSettings
    engine: AsyncEngine
    bus: ServiceBus
    beats: int = 0
    stopped: bool = False
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    name = "scheduler"
    migrations = Path(__file__).parent / "beats_migrations"

    async def start(self) -> None:
        await self.start_following()
        await self.bus.broker.start()
        self._tasks = [asyncio.create_task(self._beat())]

    async def _beat(self) -> None:
        while True:
            self.beats += 1
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        await self.bus.stop()
        await cancel_tasks(*self._tasks)
        await self.stop_following()
        await self.engine.dispose()
        self.stopped = True


def settings(pg_schema: str, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "app_key": APP_KEY,
        "nats_url": TEST_NATS_URL,
        "app_url": "http://crm.test",
        "settings_bucket": f"SETTINGS_{pg_schema}",
        **overrides,
    }
    return ServiceSettings(_env_file=None, **values)


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    """The apps freeze the heap at start-up; the test process goes back to collecting it all."""
    yield
    gc.unfreeze()


@pytest_asyncio.fixture
async def build(schema_engine: AsyncEngine, pg_schema: str) -> AsyncIterator[Callable[..., Any]]:
    """``await build(**settings)``: a connected, not yet started service over the test's schema."""
    built: list[Beats] = []

    async def make(**overrides: Any) -> Beats:
        bus = ServiceBus(TEST_NATS_URL, "scheduler")
        await bus.connect()
        service = Beats(settings(pg_schema, **overrides), create_engine(TEST_DATABASE_URL, pg_schema), bus)
        built.append(service)
        return service

    yield make
    for service in built:
        if not service.stopped:
            await service.stop()


async def test_start_waits_for_the_schema_then_follows_the_live_settings_and_stop_ends_it_all(
    build: Callable[..., Any], schema_engine: AsyncEngine, pg_schema: str
) -> None:
    nc = await nats.connect(TEST_NATS_URL)
    try:
        writer = LiveSettings(nc, APP_KEY, f"SETTINGS_{pg_schema}")
        await writer.start()
        await writer.put("business.timezone", "Europe/Vilnius", secret=False)
        await writer.put("ai.enabled", "false", secret=False)  # not the scheduler's: ignored
        await writer.stop()
    finally:
        await nc.close()
    service: Beats = await build()
    assert service.nats_ready()
    assert not await service.postgres_ready()
    assert not await service.ready()

    starting = asyncio.create_task(service.start())
    await asyncio.sleep(1.5)
    assert not starting.done()  # waits for the schema: nothing runs yet
    assert service.beats == 0

    await upgrade(service.migrations, schema_engine, pg_schema)
    await asyncio.wait_for(starting, 10)
    assert await service.ready()
    assert service._live is not None
    assert service._live.get("business.timezone") == "Europe/Vilnius"
    assert service._live.get("ai.enabled") is None
    await asyncio.sleep(0.1)
    assert service.beats > 0

    (beating,) = service._tasks
    await service.stop()
    assert beating.cancelled()
    counted = service.beats
    await asyncio.sleep(0.1)
    assert service.beats == counted


async def test_live_settings_that_cannot_be_read_leave_the_environments_values(
    build: Callable[..., Any], schema_engine: AsyncEngine, pg_schema: str
) -> None:
    await upgrade(Beats.migrations, schema_engine, pg_schema)
    service: Beats = await build(settings_bucket="no spaces allowed")
    with capture_logs() as logs:
        assert await service.start_following() is None
    assert service._live is None
    (warning,) = [entry for entry in logs if entry["event"] == "live settings unavailable, using the environment"]
    assert warning["log_level"] == "warning"
    await service.stop_following()  # nothing to stop


async def test_cancel_tasks_ends_each_and_waits_for_them() -> None:
    ended: list[str] = []

    async def sleeper(name: str) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            ended.append(name)

    tasks = [asyncio.create_task(sleeper(name)) for name in ("a", "b")]
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    await asyncio.sleep(0)
    await cancel_tasks(*tasks, done)
    assert sorted(ended) == ["a", "b"]
    assert all(task.cancelled() for task in tasks)
    assert not done.cancelled()


async def test_the_app_runs_the_service_and_its_readiness_tells_required_from_optional(
    build: Callable[..., Any], schema_engine: AsyncEngine, pg_schema: str
) -> None:
    await upgrade(Beats.migrations, schema_engine, pg_schema)
    asked: list[str] = []
    up = {"radio": True, "clock": True}

    async def radio(service: Beats) -> bool:
        asked.append("radio")
        return up["radio"] and service.beats > 0

    async def clock(service: Beats) -> bool:
        asked.append("clock")
        return up["clock"]

    made: list[Beats] = []

    async def make() -> Beats:
        made.append(await build())
        return made[-1]

    app = service_app(
        "beats",
        make,
        started=lambda service: {"beating": bool(service._tasks)},
        optional={"radio": radio, "clock": clock},
        asked_every={"clock": 3600.0},
    )
    assert app.title == "JGGL CRM beats"
    assert app.docs_url is None
    assert app.redoc_url is None

    idle = service_app("beats", make, optional={"radio": radio})
    code, body, _ = await probe_readiness(idle)  # nothing runs, nothing is asked
    assert (code, body["checks"]) == (503, {"postgres": "down", "nats": "down", "radio": "down"})
    assert asked == []

    with capture_logs() as logs:
        async with app.router.lifespan_context(app):
            (service,) = made
            await asyncio.sleep(0.05)
            code, body, gauge = await probe_readiness(app)
            assert (code, body) == (
                200,
                {"status": "ready", "checks": {"postgres": "ok", "nats": "ok", "radio": "ok", "clock": "ok"}},
            )
            assert gauge[("radio", "false")] == gauge[("postgres", "true")] == 1

            up.update(radio=False, clock=False)
            code, body, gauge = await probe_readiness(app)
            # The radio is asked each time; the clock once an hour, so it still reads "ok".
            assert (code, body) == (
                200,
                {"status": "degraded", "checks": {"postgres": "ok", "nats": "ok", "radio": "down", "clock": "ok"}},
            )
            assert gauge[("radio", "false")] == 0
            assert asked.count("clock") == 1
            assert asked.count("radio") == 4  # each /readyz and each /metrics
            assert not service.stopped
    assert service.stopped
    (started,) = [entry for entry in logs if entry["event"] == "beats started"]
    assert started["beating"] is True
    assert started["frozen_objects"] > 0


def test_only_an_optional_dependency_can_be_asked_less_often() -> None:
    async def never() -> Beats:
        raise AssertionError("not built")

    with pytest.raises(ValueError, match="'telegram', which is not an optional dependency"):
        service_app("beats", never, asked_every={"telegram": 30.0})
