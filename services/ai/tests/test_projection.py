"""The transcript projection: built only from crm's events, the same whatever the order,
and rebuilt identically by a replay of the CRM stream."""

from __future__ import annotations

import random
import secrets

from sqlalchemy import text

from ai.migrate import upgrade
from jggl_common.db import create_engine
from jggl_common.testing import TEST_DATABASE_URL

from .conftest import Bus, StartAi, eventually, minutes_ago, next_id, received, rows, sent

PROJECTION = (
    "SELECT conversation_id, deal_id, version, last_message_at, last_message_id FROM transcripts ORDER BY 1",
    "SELECT message_id, conversation_id, deal_id, author, kind, text, attachment_types, sent_at"
    " FROM transcript_messages ORDER BY 1",
)


async def snapshot(engine) -> list[list[dict]]:
    return [await rows(engine, sql) for sql in PROJECTION]


async def test_a_replay_of_the_crm_stream_rebuilds_the_same_transcripts(ai_engine, bus: Bus, start_ai: StartAi):
    await start_ai(ai_enabled=False)
    events = []
    for _ in range(12):
        conversation = next_id()
        first_deal, second_deal = next_id(), next_id()
        for i in range(random.randint(1, 8)):
            # A customer who came back after the first deal closed talks in a second deal.
            deal = first_deal if i < 4 else second_deal
            events.append(received(conversation, deal, f"question {i} ❤ <b>", minutes_ago(60 - i * 5)))
            if i % 2:
                events.append(sent(conversation, deal, f"answer {i}", minutes_ago(59 - i * 5), echo=i % 3 == 0))
        events.append(received(conversation, second_deal, None, minutes_ago(1)))  # an image
    random.shuffle(events)  # crm's events may arrive in any order...
    await bus.publish(events)
    await bus.publish(random.sample(events, 10))  # ...and more than once (new ids: no broker dedupe)
    total = len({event.data.message_id for event in events})
    await eventually(lambda: _count(ai_engine, total))
    live = await snapshot(ai_engine)

    schema = "t_" + secrets.token_hex(6)
    engine = create_engine(TEST_DATABASE_URL, schema, pool_size=5)
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        await upgrade(engine, schema)
        # A fresh ai with a durable of its own reads the CRM stream from its start.
        from ai.process import build

        from .conftest import FAST_RETRIES, ai_settings

        replayed = await build(
            ai_settings(schema, bus, None, ai_enabled=False), engine=engine, durable="ai-replay", policy=FAST_RETRIES
        )
        await replayed.start()
        try:
            await eventually(lambda: _count(engine, total))
        finally:
            await replayed.stop()
        assert await snapshot(engine) == live
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()
    assert live[0]
    assert all(row["version"] >= 2 for row in live[0])
    authors = {row["author"] for row in live[1]}
    assert authors == {"customer", "manager", "meta_inbox"}


async def _count(engine, expected: int) -> bool:
    found = await rows(engine, "SELECT count(*) AS n FROM transcript_messages")
    return found[0]["n"] == expected


async def test_the_schema_matches_the_models(ai_engine, pg_schema):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from ai.models import metadata

    def diff(connection):
        context = MigrationContext.configure(connection, opts={"include_schemas": False})
        return compare_metadata(context, metadata)

    async with ai_engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert [c for c in changes if not (isinstance(c, tuple) and c[0] == "remove_table")] == []
