"""The cap on live event streams open at once per user, as a browser meets it: crm served
for real, the streams read over HTTP, the count in Redis shared by every replica."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import nats
import pytest_asyncio
from fastapi import FastAPI
from nats.aio.client import Client as NatsClient
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.api import create_app
from crm.limits import StreamSlots
from crm.models import User
from jggl_common.db import session_scope
from jggl_common.streams import ensure_streams
from jggl_common.testing import start_nats_server, start_redis_server

from ..api.factories import create_user
from ..support import API_REDIS_URL, crm_settings
from .test_live_events import EventReader, _serve

CAP = 2
SENTENCE = "Too many open live connections for this user: close a tab"


def _refused() -> float:
    return REGISTRY.get_sample_value("jggl_crm_live_streams_refused_total") or 0.0


def _uncounted() -> float:
    return REGISTRY.get_sample_value("jggl_crm_live_streams_uncounted_total") or 0.0


@dataclass
class Replica:
    app: FastAPI
    client: httpx.AsyncClient

    def headers(self, user: User) -> dict[str, str]:
        assert user.id is not None
        return {"Authorization": f"Bearer {self.app.state.crm.tokens.issue(user.id, user.password_hash)}"}

    @asynccontextmanager
    async def stream(self, user: User) -> AsyncIterator[EventReader]:
        """An open stream of the user's, past its ``ready`` event."""
        async with self.client.stream("GET", "/api/events", headers=self.headers(user)) as response:
            assert response.status_code == 200, await response.aread()
            reader = EventReader(response)
            ready = await reader.next()
            assert ready is not None
            assert ready.event == "ready"
            yield reader


class Serve(Protocol):
    """Starts one more crm replica."""

    async def __call__(self, redis_url: str = API_REDIS_URL, cap: int = CAP) -> Replica: ...


@pytest_asyncio.fixture
async def nats_url(tmp_path: Path) -> AsyncIterator[str]:
    proc, port = start_nats_server(tmp_path / "jetstream")
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest_asyncio.fixture
async def serve(nats_url: str, pg_schema: str, crm_engine: AsyncEngine) -> AsyncIterator[Serve]:
    """Starts crm replicas on ports of their own (one database schema, one Redis database)."""
    async with AsyncExitStack() as stack:

        async def replica(redis_url: str = API_REDIS_URL, cap: int = CAP) -> Replica:
            nc: NatsClient = await nats.connect(nats_url)
            stack.push_async_callback(nc.close)
            await ensure_streams(nc.jetstream())
            redis = Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
            stack.push_async_callback(redis.aclose)
            settings = crm_settings(
                pg_schema,
                nats_url=nats_url,
                redis_url=redis_url,
                live_events_heartbeat_seconds=0.5,
                live_max_streams_per_user=cap,
            )
            app = create_app(settings, engine=crm_engine, redis=redis, nats=nc)
            server, task, port = await _serve(app)

            async def stop() -> None:
                server.should_exit = True
                await task

            stack.push_async_callback(stop)
            client = await stack.enter_async_context(httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30))
            return Replica(app, client)

        yield replica


async def _users(replica: Replica, count: int) -> list[User]:
    async with session_scope(replica.app.state.crm.sessions) as session:
        return [await create_user(session) for _ in range(count)]


def _assert_refused(answer: httpx.Response) -> None:
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "30"
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"detail": SENTENCE}


async def _opens_within(replica: Replica, user: User, seconds: float) -> None:
    """Waits until HEAD /api/events says a stream of the user's would open; fails after ``seconds``."""
    async with asyncio.timeout(seconds):
        while (await replica.client.head("/api/events", headers=replica.headers(user))).status_code != 200:
            await asyncio.sleep(0.05)


async def test_up_to_the_cap_streams_open_and_the_next_one_is_429_with_retry_after_and_a_sentence(
    serve: Serve,
) -> None:
    crm: Replica = await serve()
    alice, bob = await _users(crm, 2)
    before = _refused()
    async with crm.stream(alice), crm.stream(alice):
        # HEAD answers what GET would, without opening anything.
        probe = await crm.client.head("/api/events", headers=crm.headers(alice))
        assert probe.status_code == 429
        assert probe.headers["Retry-After"] == "30"
        refused = await crm.client.get("/api/events", headers=crm.headers(alice))
        _assert_refused(refused)
        assert _refused() == before + 1
        # A colleague has places of their own.
        assert (await crm.client.head("/api/events", headers=crm.headers(bob))).status_code == 200
        async with crm.stream(bob):
            pass


async def test_a_stream_that_ends_frees_its_place(serve: Serve) -> None:
    crm: Replica = await serve()
    (alice,) = await _users(crm, 1)
    async with crm.stream(alice):
        async with crm.stream(alice):
            _assert_refused(await crm.client.get("/api/events", headers=crm.headers(alice)))
        # The tab closed: crm notices the connection is gone and gives its place back.
        await _opens_within(crm, alice, 5)
        async with crm.stream(alice):
            _assert_refused(await crm.client.get("/api/events", headers=crm.headers(alice)))


async def test_every_replica_counts_the_same_streams(serve: Serve) -> None:
    first: Replica = await serve()
    second: Replica = await serve()
    (alice,) = await _users(first, 1)
    async with first.stream(alice), second.stream(alice):
        for replica in (first, second):
            _assert_refused(await replica.client.get("/api/events", headers=replica.headers(alice)))
    await _opens_within(second, alice, 5)


async def test_while_redis_is_down_streams_open_uncounted(serve: Serve) -> None:
    proc, port = start_redis_server()
    try:
        crm: Replica = await serve(redis_url=f"redis://127.0.0.1:{port}/0")
        (alice,) = await _users(crm, 1)
        async with crm.stream(alice), crm.stream(alice):
            _assert_refused(await crm.client.get("/api/events", headers=crm.headers(alice)))
            proc.terminate()
            proc.wait(10)
            before = _uncounted()
            # Past the cap, yet the live pages keep working: each such stream is counted as uncounted.
            async with crm.stream(alice), crm.stream(alice):
                assert (await crm.client.head("/api/events", headers=crm.headers(alice))).status_code == 200
            assert _uncounted() == before + 2
    finally:
        proc.terminate()
        proc.wait(10)


async def test_the_cap_can_be_switched_off(serve: Serve) -> None:
    crm: Replica = await serve(cap=0)
    (alice,) = await _users(crm, 1)
    async with crm.stream(alice), crm.stream(alice), crm.stream(alice):
        assert (await crm.client.head("/api/events", headers=crm.headers(alice))).status_code == 200


async def test_head_needs_credentials_like_the_stream(serve: Serve) -> None:
    crm: Replica = await serve()
    assert (await crm.client.head("/api/events")).status_code == 401
    assert (await crm.client.head("/api/events", headers={"Authorization": "Bearer nope"})).status_code == 401


async def test_the_schema_documents_the_refusal(serve: Serve) -> None:
    crm: Replica = await serve()
    paths = (await crm.client.get("/openapi.json")).json()["paths"]
    for method in ("get", "head"):
        refusal = paths["/api/events"][method]["responses"]["429"]
        assert "Too many open live connections" in refusal["description"], method
        assert refusal["headers"]["Retry-After"]["required"] is True
        assert refusal["content"] == {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorMessage"}}}


# The slots themselves, as replicas hold them: leases renewed while a replica lives, lapsing when it dies.


@pytest_asyncio.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(API_REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_killed_replicas_places_lapse_with_their_lease(redis: Redis, pg_schema: str) -> None:
    prefix = f"test:live:{pg_schema}"
    lease = 1.5  # renewed every 0.5 s: a busy machine still renews well within it
    living = StreamSlots(redis, prefix=prefix, per_user=2, lease_seconds=lease)
    killed = StreamSlots(redis, prefix=prefix, per_user=2, lease_seconds=lease)
    held = await living.take(1)
    assert held is not None
    assert await killed.take(1) is not None
    assert await living.take(1) is None
    # The killed replica renews nothing from now on (as if its process were gone); the living one keeps renewing.
    killed._held.clear()
    await asyncio.sleep(lease * 2)
    assert await living.has_room(1)
    again = await living.take(1)
    assert again is not None
    assert await living.take(1) is None, "the living replica's slot must have outlived its first lease"
    await living.release(held)
    await living.release(again)
    assert await living.has_room(1)


async def test_slots_taken_without_redis_are_written_down_when_it_answers_again(pg_schema: str) -> None:
    proc, port = start_redis_server()
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.3, socket_connect_timeout=0.3)
    try:
        slots = StreamSlots(client, prefix=f"test:live:{pg_schema}", per_user=1, retry_redis_after=0)
        proc.terminate()
        proc.wait(10)
        before = _uncounted()
        uncounted = await slots.take(7)
        assert uncounted is not None
        assert _uncounted() == before + 1

        proc, _ = start_redis_server(port)
        await slots.renew()
        # The stream opened while Redis was away counts again: the user is at the cap.
        assert not await slots.has_room(7)
        assert await slots.take(7) is None
        await slots.release(uncounted)
        assert await slots.has_room(7)
    finally:
        await client.aclose()
        proc.terminate()
        proc.wait(10)
