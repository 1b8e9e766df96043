"""Every example payload of Meta's Messenger and Instagram webhook references, the whole
way through: ingest's parser splits it into the events ingest publishes, and crm's inbound
service stores it or deliberately ignores it — never refuses it (a refusal would be a
dead letter). Cross-service: ingest's parser and crm's service side by side."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.inbound import InboundService
from crm.migrate import upgrade
from ingest.meta import split_webhook
from jggl_common.contracts import MetaItemReceived, stable_event_id
from jggl_common.db import session_factory
from jggl_common.outbox import Outbox
from jggl_sandbox.meta_documented import DOCUMENTED_SHAPES

# What crm derives from an item: a conversation's people, its messages, updates waiting
# for the message they are about, and read/delivery receipts.
TABLES = ("contacts", "messages", "pending_updates", "receipts")


class NoBroker:
    """The outbox's publisher: events staged by crm are not what this test is about."""

    async def publish_raw(self, messages: Iterable[tuple[str, bytes, dict[str, str]]]) -> list[None]:
        return [None for _ in messages]


@pytest_asyncio.fixture
async def sessions(schema_engine: AsyncEngine, pg_schema: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await upgrade(schema_engine, pg_schema)
    yield session_factory(schema_engine)


async def counts(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as session:
        return {
            table: int((await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()) for table in TABLES
        }


async def test_crm_stores_or_deliberately_ignores_every_documented_shape(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    service = InboundService(sessions, Outbox(sessions, NoBroker()))  # type: ignore[arg-type]
    wrong: list[str] = []
    for shape in DOCUMENTED_SHAPES:  # one schema for all: each shape has ids of its own
        filled = shape.fill()
        object_, items = split_webhook(filled.body)
        assert (object_, len(items)) == (shape.object, shape.events), shape.name
        before = await counts(sessions)
        for data in items:
            # A refusal raises (InvalidMetaItem is a permanent failure: straight to the DLQ).
            try:
                await service.handle(
                    MetaItemReceived(id=stable_event_id(data.dedupe_key), producer="ingest", data=data)
                )
            except Exception as exc:
                wrong.append(f"{shape.name}: refused ({type(exc).__name__}: {exc})")
        added = {table: count - before[table] for table, count in (await counts(sessions)).items()}
        if shape.crm == "ignored" and any(added.values()):
            wrong.append(f"{shape.name}: meant to be ignored, stored {added}")
        if shape.crm == "stored" and not any(added.values()):
            wrong.append(f"{shape.name}: meant to be stored, nothing stored")
    assert not wrong, "\n".join(wrong)
