"""Fixtures of the inbound consumer's tests: the service over a migrated schema of the
test's own, simulator items turned into ingest's events, and a read-back of what a
manager would see."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.config import CrmSettings
from crm.graph import GraphClient
from crm.inbound import InboundService
from jggl_common.bus import EventPublisher
from jggl_common.contracts import MetaItemReceived, stable_event_id
from jggl_common.meta import split_webhook
from jggl_common.outbox import Outbox
from jggl_common.streams import ensure_streams
from jggl_common.testing import TEST_DATABASE_URL, TEST_NATS_URL, TEST_REDIS_URL, start_nats_server
from jggl_sandbox.graph_fake import GraphFakeServer
from jggl_sandbox.meta_webhooks import JSONObject, Platform, webhook


class RecordingPublisher:
    """Stands in for JetStream where publishing is not what a test is about."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    async def publish_raw(self, messages: Iterable[tuple[str, bytes, dict[str, str]]]) -> list[None]:
        batch = list(messages)
        self.published.extend(batch)
        return [None] * len(batch)


def unique_page_id() -> str:
    """A Page / Instagram account id no other test uses."""
    return str(10**14 + secrets.randbelow(9 * 10**14))


def to_events(platform: Platform, page_id: str, items: list[JSONObject]) -> list[MetaItemReceived]:
    """Simulator items as ingest publishes them: split by ingest's own parser, one event each."""
    events = []
    for item in items:
        _, datas = split_webhook(webhook(platform, page_id, [item], time_ms=1_767_225_600_000))
        for data in datas:
            events.append(MetaItemReceived(id=stable_event_id(data.dedupe_key), producer="ingest", data=data))
    return events


@dataclass
class Harness:
    """A test's view of crm: the service, its schema, and read helpers."""

    sessions: async_sessionmaker[AsyncSession]
    settings: CrmSettings
    publisher: RecordingPublisher
    outbox: Outbox
    service: InboundService

    async def feed(self, events: Iterable[MetaItemReceived], concurrency: int = 1) -> None:
        """Hand events to the service, ``concurrency`` at a time, in the given order."""
        batch = list(events)
        for start in range(0, len(batch), concurrency):
            await asyncio.gather(*(self.service.handle(e) for e in batch[start : start + concurrency]))

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            result = await session.execute(text(sql), params)
            return [dict(row._mapping) for row in result]

    async def count(self, table: str) -> int:
        async with self.sessions() as session:
            return int((await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())

    async def messages(self) -> list[dict[str, Any]]:
        """Messages as the deal's history shows them, oldest first."""
        return await self.rows(
            "SELECT m.*, d.status AS deal_status FROM messages m JOIN deals d ON d.id = m.deal_id "
            "ORDER BY m.sent_at, m.direction, m.mid"
        )

    async def message(self, mid: str) -> dict[str, Any]:
        (row,) = await self.rows("SELECT * FROM messages WHERE mid = :mid", mid=mid)
        return row

    async def deals(self) -> list[dict[str, Any]]:
        return await self.rows(
            "SELECT d.*, s.key AS stage, c.external_id AS contact_external_id FROM deals d "
            "JOIN stages s ON s.id = d.stage_id JOIN contacts c ON c.id = d.contact_id ORDER BY d.id"
        )

    async def outbox_events(self) -> list[dict[str, Any]]:
        return await self.rows("SELECT event_id, subject, payload, published_at FROM outbox ORDER BY id")

    async def reset(self) -> None:
        """Empty every table the consumer writes (stages stay)."""
        async with self.sessions() as session:
            await session.execute(
                text(
                    "TRUNCATE activities, messages, pending_updates, receipts, deals, conversations, contacts,"
                    " channels, outbox RESTART IDENTITY CASCADE"
                )
            )
            await session.commit()

    async def dump(self, pages: Iterable[str] | None = None) -> dict[str, Any]:
        """Everything the consumer derived, without database ids or wall-clock times.

        Two runs over the same events must give equal dumps whatever the order. With
        ``pages``, only those channels' data (a consumer on the shared server also sees
        other tests' items).
        """
        only = list(pages) if pages is not None else None
        where = " AND ch.external_id = ANY(:pages)" if only is not None else ""
        params: dict[str, Any] = {"pages": only} if only is not None else {}
        scope = (
            " JOIN conversations v ON v.id = {alias}.conversation_id JOIN contacts c ON c.id = v.contact_id"
            " JOIN channels ch ON ch.id = c.channel_id WHERE true" + where
        )
        contacts = await self.rows(
            "SELECT c.external_id, c.platform, ch.external_id AS channel, c.first_seen_at, c.last_seen_at,"
            " v.last_message_at, v.last_inbound_at, v.read_watermark, v.delivered_watermark"
            " FROM contacts c JOIN channels ch ON ch.id = c.channel_id"
            " JOIN conversations v ON v.contact_id = c.id WHERE true" + where + " ORDER BY c.external_id",
            **params,
        )
        deals = await self.rows(
            "SELECT c.external_id AS contact, d.status, s.key AS stage, d.lead_source, d.referral,"
            " d.awaiting_reply_since, d.first_response_seconds, d.first_response_at, d.last_message_text,"
            " d.last_message_at, (SELECT array_agg(m.mid ORDER BY m.mid) FROM messages m WHERE m.deal_id = d.id)"
            " AS mids FROM deals d JOIN stages s ON s.id = d.stage_id"
            + scope.format(alias="d")
            + " ORDER BY c.external_id, d.last_message_at NULLS FIRST, d.lead_source",
            **params,
        )
        messages = await self.rows(
            "SELECT mid, direction, kind, text, attachments, quick_reply_payload, postback_payload, reply_to_mid,"
            " reply_to_story, reactions, reaction_clock, is_edited, edit_count, is_deleted, status, delivered_at,"
            " read_at, sent_at, author_label, app_id, response_seconds FROM messages m"
            + scope.format(alias="m")
            + " ORDER BY mid",
            **params,
        )
        pending = await self.rows(
            "SELECT mid, kind, dedupe_key, payload, occurred_at FROM pending_updates"
            + (" WHERE dedupe_key LIKE ANY(:patterns)" if only is not None else "")
            + " ORDER BY dedupe_key",
            **({"patterns": [f"%:{p}:%" for p in only]} if only is not None else {}),
        )
        receipts = await self.rows(
            "SELECT c.external_id AS contact, r.kind, r.watermark, r.occurred_at FROM receipts r"
            + scope.format(alias="r")
            + " ORDER BY 1, 2, 3, 4",
            **params,
        )
        return {
            "contacts": contacts,
            "deals": deals,
            "messages": messages,
            "pending": pending,
            "receipts": receipts,
        }


def crm_settings(**overrides: Any) -> CrmSettings:
    """Settings for a test; nothing comes from the environment's .env."""
    values: dict[str, Any] = {
        "app_key": base64.b64encode(b"k" * 32).decode(),
        "nats_url": TEST_NATS_URL,
        "app_url": "http://crm.test",
        "database_url": TEST_DATABASE_URL,
        "redis_url": TEST_REDIS_URL,
        "meta_access_token": "default-page-token",
        "consumer_workers": 8,
    }
    values.update(overrides)
    return CrmSettings(_env_file=None, **values)


@pytest.fixture(name="to_events")
def to_events_fixture() -> Any:
    """:func:`to_events`, for tests (conftest modules cannot be imported under importlib mode)."""
    return to_events


@pytest.fixture(name="unique_page_id")
def unique_page_id_fixture() -> Any:
    return unique_page_id


@pytest.fixture
def settings() -> CrmSettings:
    return crm_settings()


@pytest_asyncio.fixture
async def harness(sessions: async_sessionmaker[AsyncSession], settings: CrmSettings) -> Harness:
    publisher = RecordingPublisher()
    outbox = Outbox(sessions, publisher)  # type: ignore[arg-type]
    return Harness(sessions, settings, publisher, outbox, InboundService(sessions, outbox))


@pytest.fixture
def graph_fake() -> Iterator[GraphFakeServer]:
    with GraphFakeServer() as server:
        yield server


@pytest_asyncio.fixture
async def graph(graph_fake: GraphFakeServer, settings: CrmSettings) -> AsyncIterator[GraphClient]:
    """crm's Graph API client, talking to the test's Graph fake."""
    client = GraphClient(graph_fake.url, settings.meta_graph_version, timeout=5.0)
    yield client
    await client.aclose()


@dataclass
class Nats:
    """A JetStream server of the test's own, with the system's streams declared.

    A consumer on the machine's shared server would also receive every other test's and
    benchmark's ingest traffic published meanwhile; a private server keeps the real
    subjects, the real broker behaviour and a pristine ``INGEST`` stream.
    """

    url: str
    nc: Any
    js: Any
    publisher: EventPublisher
    tag: str

    async def publish(self, events: Iterable[MetaItemReceived]) -> None:
        """Publish like ingest: ``ingest.meta.<object>.<kind>``, Nats-Msg-Id = event id."""
        await self.publisher.publish_many((f"ingest.meta.{e.data.object}.{e.data.kind}", e) for e in events)


@pytest_asyncio.fixture
async def nats_env(tmp_path: Path) -> AsyncIterator[Nats]:
    proc, port = start_nats_server(tmp_path / "jetstream")
    url = f"nats://127.0.0.1:{port}"
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        yield Nats(url, nc, js, EventPublisher(nc), secrets.token_hex(4))
    finally:
        await nc.close()
        proc.terminate()
        proc.wait(10)
