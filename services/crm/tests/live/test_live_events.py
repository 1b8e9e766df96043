"""GET /api/events for real: crm served by uvicorn on a port, events published to a JetStream
server of the test's own, the stream read over HTTP as a browser's EventSource reads it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from nats.aio.client import Client as NatsClient
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.api import create_app
from crm.live.server import Server
from crm.models import User
from jggl_common.bus import EventPublisher
from jggl_common.contracts import (
    ChannelHealthChanged,
    ChannelHealthChangedData,
    ContactDeal,
    ContactRef,
    ContactUpdated,
    ContactUpdatedData,
    DealCreated,
    DealHotLead,
    DealSnapshot,
    DealUpdated,
    DealUpdatedData,
    Envelope,
    HotLeadData,
    MessageReceived,
    MessageReceivedData,
    MessageSent,
    MessageSentData,
    SendMessageCommand,
    SendMessageCommandData,
    SlaBreachData,
    SlaBreached,
    TaskDue,
    TaskDueData,
    utcnow,
)
from jggl_common.db import session_scope
from jggl_common.streams import ensure_streams
from jggl_common.testing import free_port, start_nats_server

from ..api.factories import PASSWORD, create_user
from ..support import API_REDIS_URL, crm_settings

CONTACT = ContactRef(id=1, platform="messenger", external_id="psid-1", display_name="Иван")


def snapshot(deal_id: int, assignee_id: int | None) -> DealSnapshot:
    return DealSnapshot(
        id=deal_id,
        conversation_id=deal_id,
        channel_id=1,
        platform="messenger",
        stage="new",
        status="open",
        assignee_id=assignee_id,
        created_at=utcnow(),
        contact=CONTACT,
    )


def created(deal_id: int, assignee_id: int | None) -> DealCreated:
    return DealCreated(producer="crm", data=snapshot(deal_id, assignee_id))


def updated(deal_id: int, assignee_id: int | None, changes: dict[str, tuple[Any, Any]]) -> DealUpdated:
    return DealUpdated(
        producer="crm", data=DealUpdatedData(deal=snapshot(deal_id, assignee_id), changes=changes, actor_user_id=None)
    )


def received(deal_id: int, assignee_id: int | None) -> MessageReceived:
    return MessageReceived(
        producer="crm",
        data=MessageReceivedData(
            message_id=deal_id,
            mid=f"m-{secrets.token_hex(4)}",
            deal_id=deal_id,
            conversation_id=deal_id,
            kind="text",
            text="привет",
            sent_at=utcnow(),
            is_first_message=False,
            deal_stage="new",
            assignee_id=assignee_id,
            contact=CONTACT,
        ),
    )


def sent(deal_id: int, assignee_id: int | None) -> MessageSent:
    return MessageSent(
        producer="crm",
        data=MessageSentData(
            message_id=deal_id,
            mid=f"m-{secrets.token_hex(4)}",
            deal_id=deal_id,
            conversation_id=deal_id,
            kind="text",
            text="hello",
            sent_at=utcnow(),
            deal_stage="new",
            assignee_id=assignee_id,
            contact=CONTACT,
        ),
    )


def breached(deal_id: int, assignee_id: int | None) -> SlaBreached:
    return SlaBreached(
        producer="crm",
        data=SlaBreachData(
            deal=snapshot(deal_id, assignee_id),
            level="breach",
            waiting_since=utcnow(),
            waited_minutes=20,
            sla_minutes=15,
        ),
    )


def due(deal_id: int, assignee_id: int | None) -> TaskDue:
    return TaskDue(
        producer="crm",
        data=TaskDueData(task_id=deal_id, title="call back", due_at=utcnow(), deal=snapshot(deal_id, assignee_id)),
    )


def hot(deal_id: int, assignee_id: int | None) -> DealHotLead:
    return DealHotLead(
        producer="ai",
        data=HotLeadData(
            deal=snapshot(deal_id, assignee_id),
            summary="wants it",
            intent="purchase",
            provider="gemini",
            analysis_version=1,
        ),
    )


def health() -> ChannelHealthChanged:
    return ChannelHealthChanged(
        producer="crm",
        data=ChannelHealthChangedData(
            channel_id=1,
            platform="messenger",
            external_id="page-1",
            status="ok",
            problems=[],
            previous_problems=[],
            recovered=True,
            checked_at=utcnow(),
        ),
    )


def contact_updated(contact_id: int, *open_deals: tuple[int, int | None]) -> ContactUpdated:
    """A customer's name became known; ``open_deals`` as (deal id, assignee id)."""
    return ContactUpdated(
        producer="crm",
        data=ContactUpdatedData(
            contact=ContactRef(
                id=contact_id, platform="messenger", external_id=f"psid-{contact_id}", display_name="Олена"
            ),
            changes={"display_name": (f"psid-{contact_id}", "Олена")},
            open_deals=[ContactDeal(id=deal_id, assignee_id=assignee) for deal_id, assignee in open_deals],
        ),
    )


def command(deal_id: int) -> SendMessageCommand:
    return SendMessageCommand(
        producer="notifier",
        data=SendMessageCommandData(acting_user_id=1, deal_id=deal_id, text="hi", idempotency_key=secrets.token_hex(4)),
    )


@dataclass
class Event:
    """One event as an EventSource sees it (plus the comments that came before it)."""

    id: str | None = None
    event: str | None = None
    data: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class EventReader:
    """Parses a text/event-stream response the way the HTML standard says browsers do."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self) -> Event | None:
        """The next dispatched event (or a comment-only block as an event without data); None at the end."""
        current = Event()
        seen = False
        async for line in self._lines:
            if line == "":
                if seen:
                    return current
                continue
            seen = True
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                current.comments.append(value)
            elif name == "data":
                current.data = f"{current.data}\n{value}" if current.data else value
            elif name == "id":
                current.id = value
            elif name == "event":
                current.event = value
            elif name == "retry":
                current.retry = int(value)
        return None

    async def events_until(self, envelope_id: str) -> list[Event]:
        """Events (not heartbeats, not ``ready``) up to and including the one carrying ``envelope_id``."""
        found: list[Event] = []
        while True:
            event = await self.next()
            assert event is not None, f"the stream ended before {envelope_id}: {[e.event for e in found]}"
            if event.event in (None, "ready"):
                continue
            found.append(event)
            if event.json.get("id") == envelope_id:
                return found


@dataclass
class World:
    app: FastAPI
    client: httpx.AsyncClient
    server: Server
    nc: NatsClient
    publisher: EventPublisher
    admin: User
    alice: User
    bob: User

    def headers(self, user: User, **extra: str) -> dict[str, str]:
        assert user.id is not None
        return {"Authorization": f"Bearer {self.app.state.crm.tokens.issue(user.id, user.password_hash)}", **extra}

    async def publish(self, *events: Envelope) -> list[int]:
        """Publish as crm's outbox does; the stream sequence of each."""
        return [(await self.publisher.publish(event)).seq for event in events]


def open_streams() -> float:
    return REGISTRY.get_sample_value("crm_live_streams_open") or 0.0


async def _serve(app: FastAPI) -> tuple[Server, asyncio.Task[None], int]:
    port = free_port()
    server = Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, timeout_graceful_shutdown=60),
        before_shutdown=app.state.crm.live.close,
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.02)
    return server, task, port


@pytest_asyncio.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[tuple[subprocess.Popen[bytes], int]]:
    proc, port = start_nats_server(tmp_path / "jetstream")
    try:
        yield proc, port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest_asyncio.fixture
async def world(
    nats_server: tuple[subprocess.Popen[bytes], int],
    pg_schema: str,
    crm_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[World]:
    url = f"nats://127.0.0.1:{nats_server[1]}"
    nc = await nats.connect(url)
    await ensure_streams(nc.jetstream())
    redis = Redis.from_url(API_REDIS_URL)
    settings = crm_settings(pg_schema, nats_url=url, live_events_heartbeat_seconds=0.5)
    app = create_app(settings, engine=crm_engine, redis=redis, nats=nc)
    async with session_scope(sessions) as session:
        admin = await create_user(session, role="admin")
        alice = await create_user(session)
        bob = await create_user(session)
    server, task, port = await _serve(app)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield World(app, client, server, nc, EventPublisher(nc), admin, alice, bob)
    finally:
        server.should_exit = True
        await task
        await nc.close()
        await redis.aclose()


async def test_a_manager_receives_own_and_unassigned_deal_events_and_not_a_colleagues(world: World) -> None:
    alice, bob = world.alice.id, world.bob.id
    expected = [
        created(1, alice),
        created(3, None),
        sent(4, alice),
        updated(5, bob, {"assignee_id": (alice, bob)}),  # taken away from her: she still hears of it
        breached(6, None),
        hot(7, alice),
        due(8, alice),
        received(9, None),
    ]
    hidden = [
        created(2, bob),
        received(10, bob),
        updated(11, bob, {"stage": ("new", "won")}),
        due(12, bob),
        health(),  # admins only
        command(1),  # a command to crm, not an event
    ]
    async with world.client.stream("GET", "/api/events", headers=world.headers(world.alice)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        reader = EventReader(response)
        ready = await reader.next()
        assert ready is not None
        assert ready.event == "ready"
        assert ready.retry is not None
        # Interleaved, so a hidden event between two visible ones would show up.
        order = [event for pair in zip(expected, hidden, strict=False) for event in pair] + expected[len(hidden) :]
        sequences = dict(zip((event.id for event in order), await world.publish(*order), strict=True))
        got = await reader.events_until(expected[-1].id)

    assert [event.json["id"] for event in got] == [event.id for event in expected]
    for event, envelope in zip(got, expected, strict=True):
        assert event.event == envelope.type
        assert event.id == str(sequences[envelope.id])
        assert event.json == json.loads(envelope.model_dump_json())


async def test_an_admin_receives_every_live_event_but_no_commands(world: World) -> None:
    events: list[Envelope] = [created(1, world.bob.id), command(1), health(), received(2, world.alice.id)]
    async with world.client.stream("GET", "/api/events", headers=world.headers(world.admin)) as response:
        reader = EventReader(response)
        assert (await reader.next()) is not None
        await world.publish(*events)
        got = await reader.events_until(events[-1].id)
    assert [event.event for event in got] == ["crm.deal.created", "crm.channel.health_changed", "crm.message.received"]


async def test_a_customers_new_name_reaches_whoever_may_see_one_of_their_open_deals(world: World) -> None:
    alice, bob = world.alice.id, world.bob.id
    events = [
        contact_updated(1, (1, alice)),
        contact_updated(2, (2, bob)),
        contact_updated(3, (3, bob), (4, None)),  # an unassigned deal: every manager may take it
        contact_updated(4),  # no open deal: admins only
        contact_updated(5, (5, bob), (6, alice)),
    ]
    expected = {"admin": [0, 1, 2, 3, 4], "alice": [0, 2, 4], "bob": [1, 2, 4]}
    marker = created(99, None)  # seen by everyone, after the others
    async with contextlib.AsyncExitStack() as stack:
        readers = {}
        for name, user in (("admin", world.admin), ("alice", world.alice), ("bob", world.bob)):
            response = await stack.enter_async_context(
                world.client.stream("GET", "/api/events", headers=world.headers(user))
            )
            readers[name] = EventReader(response)
            assert (await readers[name].next()) is not None
        await world.publish(*events, marker)
        got = {name: await reader.events_until(marker.id) for name, reader in readers.items()}

    for name, indexes in expected.items():
        seen = got[name][:-1]
        assert [event.json["id"] for event in seen] == [events[i].id for i in indexes], name
        assert {event.event for event in seen} == {"crm.contact.updated"}
        assert seen[0].json == json.loads(events[indexes[0]].model_dump_json())


async def test_reconnecting_with_last_event_id_gets_exactly_the_missed_events(world: World) -> None:
    alice, bob = world.alice.id, world.bob.id
    first = created(1, alice)
    async with world.client.stream("GET", "/api/events", headers=world.headers(world.alice)) as response:
        reader = EventReader(response)
        assert (await reader.next()) is not None
        await world.publish(first)
        (seen,) = await reader.events_until(first.id)
    assert seen.id is not None

    # While the browser is away: two for her, one for a colleague.
    missed = [received(1, alice), created(2, bob), sent(1, alice)]
    await world.publish(*missed)
    expected = [missed[0].id, missed[2].id]
    for how in ("header", "query"):
        headers = world.headers(world.alice, **({"Last-Event-ID": seen.id} if how == "header" else {}))
        params = {"last_event_id": seen.id} if how == "query" else {}
        async with world.client.stream("GET", "/api/events", headers=headers, params=params) as response:
            reader = EventReader(response)
            ready = await reader.next()
            assert ready is not None
            assert (ready.event, ready.id, ready.json) == ("ready", seen.id, {"last_event_id": int(seen.id)})
            marker = created(3, None)
            await world.publish(marker)
            got = await reader.events_until(marker.id)
        # The second reconnect, from the same id, also gets the first one's marker.
        expected.append(marker.id)
        assert [event.json["id"] for event in got] == expected, how


async def test_without_last_event_id_the_stream_starts_with_new_events(world: World) -> None:
    (old,) = await world.publish(created(1, None))
    async with world.client.stream("GET", "/api/events", headers=world.headers(world.alice)) as response:
        reader = EventReader(response)
        ready = await reader.next()
        assert ready is not None
        # The browser learns where it stands at once, so even a reconnect before any event loses nothing.
        assert ready.id == str(old)
        fresh = created(2, None)
        await world.publish(fresh)
        got = await reader.events_until(fresh.id)
    assert [event.json["id"] for event in got] == [fresh.id]


async def test_an_idle_stream_sends_heartbeat_comments(world: World) -> None:
    async with world.client.stream("GET", "/api/events", headers=world.headers(world.alice)) as response:
        reader = EventReader(response)
        assert (await reader.next()) is not None
        beat = await reader.next()
    assert beat is not None
    assert (beat.event, beat.data, beat.comments) == (None, "", ["heartbeat"])


async def test_no_credentials_get_a_401_and_the_session_cookie_opens_the_stream(world: World) -> None:
    before = open_streams()
    anonymous = await world.client.get("/api/events")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/json"
    assert anonymous.json() == {"detail": "Not authenticated"}
    forged = await world.client.get("/api/events", headers={"Authorization": "Bearer nope"})
    assert forged.status_code == 401
    assert open_streams() == before

    assert world.alice.email
    signed_in = await world.client.post("/api/auth/session", json={"email": world.alice.email, "password": PASSWORD})
    assert signed_in.status_code == 200
    async with world.client.stream("GET", "/api/events") as response:
        assert response.status_code == 200
        ready = await EventReader(response).next()
        assert ready is not None
        assert ready.event == "ready"
        assert open_streams() == before + 1


async def test_a_bad_last_event_id_is_a_422(world: World) -> None:
    response = await world.client.get("/api/events", headers=world.headers(world.alice, **{"Last-Event-ID": "abc"}))
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


async def test_the_stream_ends_when_the_session_expires(world: World) -> None:
    assert world.alice.id is not None
    tokens = world.app.state.crm.tokens
    # A token with a second or two left to live.
    token = tokens.issue(
        world.alice.id, world.alice.password_hash, now=utcnow() - timedelta(seconds=tokens.ttl_seconds - 2)
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with world.client.stream("GET", "/api/events", headers=headers) as response:
        assert response.status_code == 200
        reader = EventReader(response)
        while (event := await reader.next()) is not None:
            assert event.event in ("ready", None)
    assert (await world.client.get("/api/events", headers=headers)).status_code == 401


async def test_a_long_backlog_after_a_reconnect_arrives_whole_and_in_order(world: World) -> None:
    # The stream pulls one event at a time as the client takes them: a backlog far larger
    # than anything crm would buffer is neither dropped nor cut short.
    burst = [created(index, world.alice.id if index % 3 else None) for index in range(400)]
    sequences = await world.publish(*burst)
    headers = world.headers(world.alice, **{"Last-Event-ID": str(sequences[0] - 1)})
    async with world.client.stream("GET", "/api/events", headers=headers) as response:
        got = await EventReader(response).events_until(burst[-1].id)
    assert [event.json["id"] for event in got] == [event.id for event in burst]
    assert [int(event.id or 0) for event in got] == sequences


async def test_events_a_manager_may_not_see_do_not_hold_back_the_heartbeat(world: World) -> None:
    async def colleagues_busy_deal() -> None:
        while True:
            await world.publish(received(2, world.bob.id))
            await asyncio.sleep(0.05)  # well inside the 0.5 s heartbeat of this world

    async with world.client.stream("GET", "/api/events", headers=world.headers(world.alice)) as response:
        reader = EventReader(response)
        assert (await reader.next()) is not None
        traffic = asyncio.create_task(colleagues_busy_deal())
        try:
            beat = await reader.next()
        finally:
            traffic.cancel()
    assert beat is not None
    assert (beat.event, beat.comments) == (None, ["heartbeat"])


async def test_shutdown_ends_open_streams_cleanly(
    nats_server: tuple[subprocess.Popen[bytes], int], pg_schema: str, crm_engine: AsyncEngine
) -> None:
    url = f"nats://127.0.0.1:{nats_server[1]}"
    nc = await nats.connect(url)
    await ensure_streams(nc.jetstream())
    redis = Redis.from_url(API_REDIS_URL)
    app = create_app(crm_settings(pg_schema, nats_url=url), engine=crm_engine, redis=redis, nats=nc)
    async with session_scope(app.state.crm.sessions) as session:
        user = await create_user(session)
    assert user.id is not None
    token = app.state.crm.tokens.issue(user.id, user.password_hash)
    before = open_streams()
    server, task, port = await _serve(app)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            async with client.stream("GET", "/api/events", headers={"Authorization": f"Bearer {token}"}) as response:
                reader = EventReader(response)
                assert (await reader.next()) is not None
                assert open_streams() == before + 1
                server.should_exit = True
                # The stream ends (the graceful timeout is a minute: ending it is crm's doing).
                assert await reader.next() is None
            await task
        assert open_streams() == before
    finally:
        server.should_exit = True
        await task
        await nc.close()
        await redis.aclose()


def streams_ended(reason: str) -> float:
    return REGISTRY.get_sample_value("crm_live_streams_ended_total", {"reason": reason}) or 0.0


async def _ends_within(reader: EventReader, seconds: float) -> list[Event]:
    """What the stream sends until it ends; fails when it is still open after ``seconds``."""
    seen: list[Event] = []
    async with asyncio.timeout(seconds):
        while (event := await reader.next()) is not None:
            seen.append(event)
    return seen


# The world's heartbeat is 0.5 s: the session is read again at least that often, so a
# revoked stream ends within one interval plus a pull (a generous 3 s leaves room for a busy machine).
REVOKED_STREAM_ENDS_WITHIN = 3.0


async def test_a_stream_ends_soon_after_its_user_signs_out(world: World) -> None:
    before = streams_ended("session_revoked")
    headers = world.headers(world.alice)
    async with world.client.stream("GET", "/api/events", headers=headers) as response:
        reader = EventReader(response)
        assert (await reader.next()) is not None
        # Still signed in: the checks pass and the heartbeats keep coming.
        for _ in range(3):
            beat = await reader.next()
            assert beat is not None
            assert beat.comments == ["heartbeat"]
        # Signing out from another tab (another token of hers) revokes this stream's token too.
        signed_out = await world.client.post("/api/auth/logout", headers=world.headers(world.alice))
        assert signed_out.status_code == 204
        tail = await _ends_within(reader, REVOKED_STREAM_ENDS_WITHIN)
    assert all(event.event is None for event in tail)  # heartbeats at most, no events after the sign-out
    assert streams_ended("session_revoked") == before + 1
    again = await world.client.get("/api/events", headers=headers)
    assert again.status_code == 401


async def test_a_stream_ends_soon_after_its_user_is_deactivated_or_changes_role(world: World) -> None:
    admin = world.headers(world.admin)
    for user, change in ((world.bob, {"is_active": False}), (world.alice, {"role": "admin"})):
        before = streams_ended("session_revoked")
        headers = world.headers(user)
        async with world.client.stream("GET", "/api/events", headers=headers) as response:
            reader = EventReader(response)
            assert (await reader.next()) is not None
            changed = await world.client.patch(f"/api/users/{user.id}", headers=admin, json=change)
            assert changed.status_code == 200, changed.text
            await _ends_within(reader, REVOKED_STREAM_ENDS_WITHIN)
        assert streams_ended("session_revoked") == before + 1, change
        # The browser's reconnect is refused: it signs in again (and, as an admin, sees everything).
        assert (await world.client.get("/api/events", headers=headers)).status_code == 401, change
