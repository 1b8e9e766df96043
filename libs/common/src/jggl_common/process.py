"""A background service's process: one event loop that consumes from NATS, keeps its state
in its own PostgreSQL schema, and serves the operational endpoints.

ai, notifier and scheduler are built alike: a dataclass subclassing
:class:`BackgroundService` wires the service (its ``build``), ``start`` waits for the
schema and follows the live settings, ``stop`` winds it down; :func:`service_app` runs it
as an ASGI app whose lifespan is the service's and whose routes are ``/healthz``,
``/readyz`` (PostgreSQL and NATS required, plus the service's optional dependencies, which
a deployment may switch off) and ``/metrics``. :func:`connect` opens what every one of
them starts from: its database, NATS and its outbox.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol, TypeVar

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .bus import ServiceBus
from .db import create_engine, session_factory
from .health import ReadinessCheck, SwitchedOn, cached, health_router
from .live_settings import SERVICE_SETTINGS, LiveSettings
from .logs import get_logger
from .migrations import is_current, wait_until_current
from .outbox import Outbox
from .runtime import freeze_startup_heap
from .settings import ServiceSettings

__all__ = ["BackgroundService", "Connections", "cancel_tasks", "connect", "service_app"]

log = get_logger(__name__)


class BackgroundService(ABC):
    """What a background service's process shares with the others: its readiness and the
    first steps of its start. Subclasses are dataclasses with ``settings``, ``engine`` and
    ``bus`` among their fields, and set :attr:`name` and :attr:`migrations`."""

    name: ClassVar[str]
    """The service's name: its schema's waiting message, its live settings (``SERVICE_SETTINGS``)."""
    migrations: ClassVar[Path]
    """The folder of its Alembic migrations (its schema must be at their head)."""

    settings: ServiceSettings
    engine: AsyncEngine
    bus: ServiceBus
    _live: LiveSettings | None = None
    """The live settings while they are followed (set by :meth:`start_following`)."""

    @abstractmethod
    async def start(self) -> None:
        """Start consuming and working (the bus is connected)."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop taking messages, finish or cancel what runs, close everything."""

    async def start_following(self) -> LiveSettings | None:
        """Wait for the schema to be migrated, then follow the live settings this service
        reads; ``None`` (with a warning) when they cannot be read: the environment's
        values apply."""
        await wait_until_current(self.migrations, self.engine, self.name)
        live = LiveSettings(
            self.bus.broker.connection,
            self.settings.app_keys,
            self.settings.settings_bucket,
            replicas=self.settings.nats_stream_replicas,
            keys=SERVICE_SETTINGS[self.name],
        )
        try:
            await live.start()
        except Exception as exc:
            log.warning("live settings unavailable, using the environment", error=f"{type(exc).__name__}: {exc}")
            return None
        self._live = live
        return live

    async def stop_following(self) -> None:
        """Stop following the live settings (if they were followed)."""
        if self._live is not None:
            await self._live.stop()

    async def ready(self) -> bool:
        """The database answers with the schema migrated, and NATS is connected."""
        return await self.postgres_ready() and self.nats_ready()

    async def postgres_ready(self) -> bool:
        """The database answers and its schema is at the latest migration."""
        return await is_current(self.migrations, self.engine)

    def nats_ready(self) -> bool:
        """The connection to NATS is up (it reconnects by itself after an outage)."""
        return bool(self.bus.broker.connection and self.bus.broker.connection.is_connected)


class ConnectionSettings(Protocol):
    """What :func:`connect` reads of a background service's settings."""

    @property
    def database_url(self) -> str: ...
    @property
    def db_schema(self) -> str: ...
    @property
    def db_pool_size(self) -> int: ...
    @property
    def nats_url(self) -> str: ...
    @property
    def nats_stream_replicas(self) -> int | None: ...


class Connections(NamedTuple):
    """What a background service's ``build`` starts from."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    bus: ServiceBus
    outbox: Outbox


async def connect(name: str, settings: ConnectionSettings, engine: AsyncEngine | None = None) -> Connections:
    """The service ``name``'s engine on its schema (``engine`` when given: tests share
    theirs), its sessions, its bus connected to NATS (the streams made sure of) and its
    outbox, which publishes through that bus."""
    engine = engine or create_engine(settings.database_url, settings.db_schema, pool_size=settings.db_pool_size)
    sessions = session_factory(engine)
    bus = ServiceBus(settings.nats_url, name)
    await bus.connect(replicas=settings.nats_stream_replicas)
    return Connections(engine, sessions, bus, Outbox(sessions, bus.publisher))


async def cancel_tasks(*tasks: asyncio.Task[Any]) -> None:
    """Cancel ``tasks`` and wait until each has ended."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with suppress(asyncio.CancelledError):
            await task


ServiceT = TypeVar("ServiceT", bound=BackgroundService)


def service_app(
    name: str,
    build: Callable[[], Awaitable[ServiceT]],
    *,
    started: Callable[[ServiceT], Mapping[str, Any]] | None = None,
    optional: Mapping[str, Callable[[ServiceT], Awaitable[bool]]] | None = None,
    enabled: Mapping[str, Callable[[ServiceT], bool]] | None = None,
    asked_every: Mapping[str, float] | None = None,
) -> FastAPI:
    """The service ``build()`` returns as an ASGI app titled after ``name``: its lifespan
    builds and starts the service, freezes the start-up heap, logs ``"<name> started"``
    with ``started(service)``'s fields, and stops it at the end.

    ``/readyz`` requires ``postgres`` and ``nats``; each of ``optional`` is asked of the
    running service and only degrades readiness (down while nothing runs). One named in
    ``enabled`` is ``"disabled"`` while that callable answers False for the running service
    (it is deliberately not configured: it is not asked and degrades nothing). One named in
    ``asked_every`` is asked at most once per that many seconds (a remote API is not
    called on every probe; see :func:`~jggl_common.health.cached`).
    """
    running: list[ServiceT] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await build()
        running.append(service)
        await service.start()
        fields = started(service) if started is not None else {}
        log.info(f"{name} started", frozen_objects=freeze_startup_heap(), **fields)
        try:
            yield
        finally:
            await service.stop()

    def check(ask: Callable[[ServiceT], Awaitable[bool]]) -> ReadinessCheck:
        async def of_running() -> bool:
            return bool(running) and await ask(running[0])

        return of_running

    async def nats(service: ServiceT) -> bool:
        return service.nats_ready()

    def switch(on: Callable[[ServiceT], bool]) -> SwitchedOn:
        # While nothing runs, nothing says the dependency is off: it is asked (and down).
        return lambda: not running or on(running[0])

    extra = {dependency: check(ask) for dependency, ask in (optional or {}).items()}
    for dependency, seconds in (asked_every or {}).items():
        if dependency not in extra:
            raise ValueError(f"asked_every names {dependency!r}, which is not an optional dependency")
        extra[dependency] = cached(extra[dependency], seconds)
    switches = {dependency: switch(on) for dependency, on in (enabled or {}).items()}
    required = {"postgres": check(lambda service: service.postgres_ready()), "nats": check(nats)}
    app = FastAPI(title=f"JGGL CRM {name}", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.include_router(health_router(required, optional=extra, enabled=switches))
    return app
