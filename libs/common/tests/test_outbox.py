"""The shared transactional outbox against the real PostgreSQL and a real JetStream:
what commits is announced once, what rolls back never, and an outage of NATS only
delays the announcement."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
import sqlalchemy as sa
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from jggl_common.bus import EventPublisher
from jggl_common.contracts import Envelope, utcnow
from jggl_common.db import session_factory
from jggl_common.outbox import Outbox, outbox_columns, stage, stage_all
from jggl_common.streams import SCHEDULER, ensure_streams
from jggl_common.testing import TEST_NATS_URL, start_nats_server


class Ping(Envelope):
    subject = "scheduler.tick.outbox"
    type: str = "test.outbox.ping"
    version: int = 1
    data: dict[str, Any]


class Boom(Exception):
    pass


@pytest.fixture
def subject() -> str:
    """A subject of this test's own in the ``SCHEDULER`` stream."""
    return f"scheduler.tick.outbox{secrets.token_hex(4)}"


@pytest_asyncio.fixture
async def sessions(schema_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions over a schema holding nothing but an ``outbox`` table."""
    async with schema_engine.begin() as conn:
        await conn.run_sync(sa.Table("outbox", sa.MetaData(), *outbox_columns()).metadata.create_all)
    return session_factory(schema_engine)


@pytest_asyncio.fixture
async def nc() -> AsyncIterator[Any]:
    """A connection to the test process's NATS, with the system's streams declared."""
    connection = await nats.connect(TEST_NATS_URL)
    await ensure_streams(connection.jetstream())
    try:
        yield connection
    finally:
        await connection.close()


def ping(key: str) -> Ping:
    return Ping(producer="test", correlation_id=f"corr-{key}", data={"key": key})


async def rows(sessions: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    async with sessions() as session:
        result = await session.execute(sa.text("SELECT * FROM outbox ORDER BY id"))
        return [dict(row._mapping) for row in result]


async def stored(js: Any, subject: str, *, idle: float = 0.5) -> list[Any]:
    """Every message JetStream stored on ``subject``, oldest first (read until ``idle``s of quiet)."""
    sub = await js.subscribe(subject, ordered_consumer=True, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    found = []
    try:
        while True:
            try:
                found.append(await sub.next_msg(timeout=idle))
            except nats.errors.TimeoutError:
                return found
    finally:
        await sub.unsubscribe()


async def until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)


async def test_a_committed_unit_of_works_events_reach_jetstream_once_and_are_marked_by_the_relay(
    sessions: async_sessionmaker[AsyncSession], nc: Any, subject: str
) -> None:
    outbox = Outbox(sessions, EventPublisher(nc))
    first, second = ping("first"), ping("second")

    async with outbox.transaction() as session:
        await stage(session, first, subject)
        await stage_all(session, [(second, subject)])
        # Nothing is visible, let alone published, before the commit.
        assert await rows(sessions) == []
        assert await stored(nc.jetstream(), subject, idle=0.2) == []

    messages = await stored(nc.jetstream(), subject)
    assert [Ping.model_validate_json(msg.data).data["key"] for msg in messages] == ["first", "second"]
    assert [msg.headers["Nats-Msg-Id"] for msg in messages] == [first.id, second.id]
    assert messages[0].headers["X-Correlation-ID"] == "corr-first"
    assert {msg.metadata.stream for msg in messages} == {SCHEDULER.name}
    # Committed, published from memory, not marked yet: the relay marks them.
    assert [(row["event_id"], row["subject"], row["published_at"]) for row in await rows(sessions)] == [
        (first.id, subject, None),
        (second.id, subject, None),
    ]

    await outbox.relay_once()
    await outbox.relay_once()

    assert all(row["published_at"] is not None for row in await rows(sessions))
    # The relay found nothing left to publish: the stream still holds each event once.
    assert [msg.headers["Nats-Msg-Id"] for msg in await stored(nc.jetstream(), subject)] == [first.id, second.id]


async def test_a_rolled_back_unit_of_work_leaves_no_row_and_announces_nothing(
    sessions: async_sessionmaker[AsyncSession], nc: Any, subject: str
) -> None:
    outbox = Outbox(sessions, EventPublisher(nc))

    async def failing_unit() -> None:
        async with outbox.transaction() as session:
            await stage(session, ping("never"), subject)
            raise Boom

    with pytest.raises(Boom):
        await failing_unit()

    assert await rows(sessions) == []
    await outbox.relay_once()
    assert await stored(nc.jetstream(), subject) == []


async def test_the_events_of_an_endpoint_that_committed_its_own_session_are_published(
    sessions: async_sessionmaker[AsyncSession], nc: Any, subject: str
) -> None:
    outbox = Outbox(sessions, EventPublisher(nc))
    event = ping("request")

    async with sessions() as session:
        await stage(session, event, subject)
        await session.commit()
        await outbox.committed(session)
        await outbox.committed(session)  # what was taken is not published again

    assert [msg.headers["Nats-Msg-Id"] for msg in await stored(nc.jetstream(), subject)] == [event.id]
    assert await outbox.mark_published() == 1
    assert (await rows(sessions))[0]["published_at"] is not None


async def test_with_nats_down_the_change_still_commits_and_the_relay_publishes_it_when_nats_is_back(
    sessions: async_sessionmaker[AsyncSession],
    private_nats: tuple[subprocess.Popen[bytes], int],
    tmp_path: Path,
    subject: str,
) -> None:
    proc, port = private_nats
    url = f"nats://127.0.0.1:{port}"
    connection = await nats.connect(url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    restarted: subprocess.Popen[bytes] | None = None
    try:
        await ensure_streams(connection.jetstream())
        outbox = Outbox(sessions, EventPublisher(connection, timeout=1.0))
        proc.terminate()
        proc.wait(10)
        await until(lambda: not connection.is_connected, "the client noticed NATS is gone")

        first, second = ping("first"), ping("second")
        async with outbox.transaction() as session:
            await stage_all(session, [(first, subject), (second, subject)])
        # Committed although nothing could be published; the relay cannot either, yet.
        await outbox.relay_once()
        assert [(row["event_id"], row["published_at"]) for row in await rows(sessions)] == [
            (first.id, None),
            (second.id, None),
        ]

        restarted, _ = start_nats_server(tmp_path / "js", port)  # the same store: the streams are still there
        await until(lambda: connection.is_connected, "the client reconnected")
        await outbox.relay_once()

        assert all(row["published_at"] is not None for row in await rows(sessions))
        messages = await stored(connection.jetstream(), subject)
        assert [msg.headers["Nats-Msg-Id"] for msg in messages] == [first.id, second.id]
        assert [Ping.model_validate_json(msg.data).data["key"] for msg in messages] == ["first", "second"]
    finally:
        await connection.close()
        if restarted is not None:
            restarted.terminate()
            restarted.wait(10)


async def test_staging_the_same_event_twice_keeps_one_row_and_one_message(
    sessions: async_sessionmaker[AsyncSession], nc: Any, subject: str
) -> None:
    outbox = Outbox(sessions, EventPublisher(nc))
    event = ping("again")

    async with outbox.transaction() as session:
        assert await stage(session, event, subject) == event.id
        assert await stage(session, event, subject) == event.id
    # A redelivered message stages its event again in a later transaction.
    async with outbox.transaction() as session:
        await stage_all(session, [(event, subject), (ping("other"), subject)])
    await outbox.relay_once()

    assert [row["event_id"] for row in await rows(sessions)].count(event.id) == 1
    assert len(await rows(sessions)) == 2
    ids = [msg.headers["Nats-Msg-Id"] for msg in await stored(nc.jetstream(), subject)]
    assert ids.count(event.id) == 1
    assert len(ids) == 2


async def test_prune_deletes_only_rows_published_longer_ago_than_the_retention(
    sessions: async_sessionmaker[AsyncSession], nc: Any, subject: str
) -> None:
    outbox = Outbox(sessions, EventPublisher(nc), retention=timedelta(hours=1))
    events = {name: ping(name) for name in ("old", "older", "recent", "unpublished", "unpublished_old")}
    async with sessions() as session:
        await stage_all(session, [(event, subject) for event in events.values()])
        await session.commit()
    published_ago = {"old": timedelta(minutes=61), "older": timedelta(days=3), "recent": timedelta(minutes=59)}
    async with sessions() as session:
        for name, ago in published_ago.items():
            await session.execute(
                sa.text("UPDATE outbox SET published_at = :at WHERE event_id = :id"),
                {"at": utcnow() - ago, "id": events[name].id},
            )
        # Created long ago but never published: the relay's to publish, never pruned.
        await session.execute(
            sa.text("UPDATE outbox SET created_at = now() - interval '3 days' WHERE event_id = :id"),
            {"id": events["unpublished_old"].id},
        )
        await session.commit()

    assert await outbox.prune() == 2

    left = {row["event_id"] for row in await rows(sessions)}
    assert left == {events[name].id for name in ("recent", "unpublished", "unpublished_old")}
    assert await outbox.prune() == 0
