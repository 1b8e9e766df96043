"""crm's reply side, running for real: the API in-process, the sender and the command
consumers on a nats-server of the test's own, the Graph fake on a loopback port, and an
ingest stand-in that receives the fake's signed echo webhooks and hands them to the
inbound service before answering (so an echo sent "before the answer" is applied before
the sender hears back, deterministically).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI, Request, Response
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.api import create_app
from crm.config import CrmSettings
from crm.conversation.repository import recompute_deal
from crm.graph import GraphClient
from crm.inbound import InboundService
from crm.models import Channel, Contact, Conversation, Deal, Message, Setting, User
from crm.worker import Outbound, register_outbound
from jggl_common.bus import EventPublisher, RetryPolicy, ServiceBus
from jggl_common.contracts import Envelope, MetaItemReceived, stable_event_id, utcnow
from jggl_common.db import session_scope
from jggl_common.meta import split_webhook, verify_signature
from jggl_common.outbox import Outbox
from jggl_common.streams import ensure_streams
from jggl_common.testing import TEST_DATABASE_URL, TEST_REDIS_URL, start_nats_server, stored_events
from jggl_sandbox.graph_fake import GraphFakeServer
from jggl_sandbox.meta_webhooks import DEFAULT_APP_ID

APP_KEY = base64.b64encode(hashlib.sha256(b"crm outbound tests").digest()).decode()
APP_SECRET = "outbound-test-app-secret"
PAGE_TOKEN = "page-token"
META_INBOX_APP_ID = 263902037430900
"""The app id Meta's own Page inbox puts on its echoes."""
# These users never log in: their tokens are issued directly.
PASSWORD_HASH = "not-a-password-hash"


def outbound_settings(schema: str, nats_url: str, graph_url: str, **overrides: Any) -> CrmSettings:
    """Settings for crm under test: fast retries, the fake as Graph, nothing from ``.env``."""
    values: dict[str, Any] = {
        "app_key": APP_KEY,
        "nats_url": nats_url,
        "app_url": "http://crm.test",
        "database_url": TEST_DATABASE_URL,
        "redis_url": TEST_REDIS_URL,
        "db_schema": schema,
        "admin_email": "",
        "admin_password": "",
        "meta_graph_url": graph_url,
        "meta_app_id": str(DEFAULT_APP_ID),
        "meta_access_token": PAGE_TOKEN,
        "send_retry_base_seconds": 0.25,
        "send_max_attempts": 4,
        **overrides,
    }
    return CrmSettings(_env_file=None, **values)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0, what: str = "condition") -> None:
    """Wait until ``check()`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout}s")
        await asyncio.sleep(0.05)


class EchoReceiver:
    """Ingest's webhook endpoint, reduced to what echoes need: check the signature, split
    the body like ingest does, apply each item with the inbound service, then answer."""

    def __init__(self, service: InboundService, app_secret: str) -> None:
        self.service = service
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0
        app = FastAPI()

        @app.post("/webhooks/meta")
        async def meta(request: Request) -> Response:
            body = await request.body()
            if not verify_signature(body, request.headers.get("x-hub-signature-256"), app_secret):
                self.refused += 1
                return Response(status_code=403)
            payload = json.loads(body)
            self.received.append(payload)
            _, items = split_webhook(payload)
            for data in items:
                await self.service.handle(
                    MetaItemReceived(id=stable_event_id(data.dedupe_key), producer="ingest", data=data)
                )
            return Response(status_code=200)

        self.app = app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/meta"

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off"))
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        await eventually(lambda: _started(self._server), 10, "echo receiver start")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task


async def _started(server: uvicorn.Server | None) -> bool:
    return bool(server and server.started)


@dataclass
class Crm:
    """crm under test and the world around it."""

    client: httpx.AsyncClient
    app: FastAPI
    sessions: async_sessionmaker[AsyncSession]
    settings: CrmSettings
    graph: GraphFakeServer
    receiver: EchoReceiver
    outbound: Outbound
    publisher: EventPublisher
    js: Any

    @property
    def fake(self) -> Any:
        return self.graph.fake

    # ------------------------------------------------------------ world setup

    async def user(self, role: str = "manager") -> User:
        async with session_scope(self.sessions) as session:
            user = User(
                email=f"{role}-{secrets.token_hex(6)}@example.test",
                name=f"{role.title()} {secrets.token_hex(2)}",
                password_hash=PASSWORD_HASH,
                role=role,
            )
            session.add(user)
        return user

    def headers(self, user: User) -> dict[str, str]:
        assert user.id is not None
        return {"Authorization": f"Bearer {self.app.state.crm.tokens.issue(user.id, user.password_hash)}"}

    async def deal(
        self,
        *,
        wrote_ago: timedelta | None = timedelta(hours=1),
        assignee: User | None = None,
        platform: str = "messenger",
        text_: str = "Is it still available?",
    ) -> Deal:
        """A deal whose customer last wrote ``wrote_ago`` (never, with None)."""
        async with session_scope(self.sessions) as session:
            channel = Channel(platform=platform, external_id=str(10**14 + secrets.randbelow(9 * 10**14)), name="Shop")
            session.add(channel)
            await session.flush()
            assert channel.id is not None
            contact = Contact(
                channel_id=channel.id, platform=platform, external_id=str(10**15 + secrets.randbelow(9 * 10**15))
            )
            session.add(contact)
            await session.flush()
            assert contact.id is not None
            wrote_at = utcnow() - wrote_ago if wrote_ago is not None else None
            conversation = Conversation(channel_id=channel.id, contact_id=contact.id, last_inbound_at=wrote_at)
            session.add(conversation)
            await session.flush()
            assert conversation.id is not None
            stage_id = (await session.execute(text("SELECT id FROM stages WHERE key = 'new'"))).scalar_one()
            deal = Deal(
                conversation_id=conversation.id,
                contact_id=contact.id,
                channel_id=channel.id,
                platform=platform,
                stage_id=stage_id,
                assignee_id=assignee.id if assignee else None,
            )
            session.add(deal)
            await session.flush()
            assert deal.id is not None
            if wrote_at is not None:
                session.add(
                    Message(
                        conversation_id=conversation.id,
                        deal_id=deal.id,
                        mid="m_" + secrets.token_hex(16),
                        direction="in",
                        kind="text",
                        text=text_,
                        status="received",
                        sent_at=wrote_at,
                    )
                )
                await session.flush()
                await recompute_deal(session, deal.id)
        return deal

    async def set_human_agent(self, enabled: bool) -> None:
        """An admin's override of ``meta.human_agent``, as the settings API stores it."""
        async with session_scope(self.sessions) as session:
            await session.merge(Setting(key="meta.human_agent", value="true" if enabled else "false", is_secret=False))

    async def page_of(self, deal: Deal) -> str:
        async with self.sessions() as session:
            channel = await session.get(Channel, deal.channel_id)
            assert channel is not None
            return channel.external_id

    async def psid_of(self, deal: Deal) -> str:
        async with self.sessions() as session:
            contact = await session.get(Contact, deal.contact_id)
            assert contact is not None
            return contact.external_id

    # ------------------------------------------------------------------ acting

    async def reply(self, user: User, deal: Deal, text_: str | None = "Yes, it is!", **body: Any) -> httpx.Response:
        payload: dict[str, Any] = {"idempotency_key": body.pop("idempotency_key", secrets.token_hex(8)), **body}
        if text_ is not None:
            payload["text"] = text_
        return await self.client.post(f"/api/deals/{deal.id}/messages", json=payload, headers=self.headers(user))

    async def publish(self, envelope: Envelope) -> None:
        await self.publisher.publish(envelope)

    # ----------------------------------------------------------------- reading

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            return [dict(row._mapping) for row in await session.execute(text(sql), params)]

    async def outgoing(self, deal: Deal) -> list[dict[str, Any]]:
        return await self.rows("SELECT * FROM messages WHERE deal_id = :d AND direction = 'out' ORDER BY id", d=deal.id)

    async def message(self, message_id: int) -> dict[str, Any]:
        (row,) = await self.rows("SELECT * FROM messages WHERE id = :i", i=message_id)
        return row

    async def deal_row(self, deal: Deal) -> dict[str, Any]:
        (row,) = await self.rows("SELECT * FROM deals WHERE id = :i", i=deal.id)
        return row

    async def settled(self, message_id: int, timeout: float = 20.0) -> dict[str, Any]:
        """The reply once it is no longer queued."""

        async def done() -> bool:
            return bool((await self.message(message_id))["status"] != "queued")

        await eventually(done, timeout, f"reply {message_id} sent or failed")
        return await self.message(message_id)

    async def events(self, subject: str, *, at_least: int = 0, idle: float = 0.25) -> list[dict[str, Any]]:
        """Payloads stored on ``subject`` in this test's JetStream, oldest first.

        Events are published right after the commit that a test observes, so reading
        waits for ``at_least`` of them, then for ``idle`` seconds of quiet.
        """
        return await stored_events(self.js, subject, at_least=at_least, idle=idle)


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Environment defaults also come from ./.env: run where there is none.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def graph_fake() -> Iterator[GraphFakeServer]:
    with GraphFakeServer() as server:
        server.fake.app_secret = APP_SECRET
        server.fake.app_id = DEFAULT_APP_ID
        yield server


@pytest_asyncio.fixture
async def nats_url(tmp_path: Path) -> AsyncIterator[str]:
    """A JetStream server of the test's own: its CRM stream holds this test's events only."""
    proc, port = start_nats_server(tmp_path / "jetstream")
    url = f"nats://127.0.0.1:{port}"
    try:
        nc = await nats.connect(url)
        await ensure_streams(nc.jetstream())
        await nc.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest_asyncio.fixture
async def crm(
    pg_schema: str, crm_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], nats_url: str, graph_fake
) -> AsyncIterator[Crm]:
    settings = outbound_settings(pg_schema, nats_url, graph_fake.url)
    bus = ServiceBus(nats_url, "crmtest" + secrets.token_hex(3))
    await bus.broker.connect()
    outbox = Outbox(sessions, bus.publisher)
    graph = GraphClient.from_settings(settings, timeout=5.0)
    redis = Redis.from_url(TEST_REDIS_URL)
    outbound = register_outbound(
        bus, sessions, outbox, settings, graph, redis=redis, policy=RetryPolicy(max_deliveries=3, backoff=(0.1,))
    )
    receiver = EchoReceiver(InboundService(sessions, outbox, app_id=settings.meta_app_id), APP_SECRET)
    await receiver.start()
    graph_fake.fake.echo_url = receiver.url
    graph_fake.fake.echo_mode = "off"
    await bus.broker.start()
    app = create_app(settings, engine=crm_engine, redis=redis, outbox=outbox)
    nc = await nats.connect(nats_url)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(f"10.9.{secrets.randbelow(256)}.7", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://crm.test", timeout=30) as client:
                yield Crm(
                    client=client,
                    app=app,
                    sessions=sessions,
                    settings=settings,
                    graph=graph_fake,
                    receiver=receiver,
                    outbound=outbound,
                    publisher=EventPublisher(nc),
                    js=nc.jetstream(),
                )
    finally:
        await bus.broker.stop()
        await receiver.stop()
        await nc.close()
        await graph.aclose()
        await redis.aclose()
