"""The consumer's events: published from memory after the commit, marked by the relay."""

from __future__ import annotations

import json
import random

from sqlalchemy import text

from jggl_common.outbox import Outbox
from jggl_sandbox.meta_webhooks import Customer


async def test_events_are_published_after_commit_and_their_rows_marked_later(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(91), page_id=page)

    await harness.service.handle(to_events("messenger", page, [customer.text("Добрий день")])[0])

    published = [(subject, json.loads(payload), headers) for subject, payload, headers in harness.publisher.published]
    assert [subject for subject, _, _ in published] == ["crm.deal.created", "crm.message.received"]
    assert all(headers["Nats-Msg-Id"] == payload["id"] for _, payload, headers in published)
    rows = await harness.outbox_events()
    assert [row["event_id"] for row in rows] == [payload["id"] for _, payload, _ in published]
    assert [row["published_at"] for row in rows] == [None, None]  # not marked yet

    assert await harness.outbox.mark_published() == 2
    assert all(row["published_at"] is not None for row in await harness.outbox_events())
    # The relay finds nothing left to publish, so nothing goes out twice.
    assert await harness.outbox.flush() == 0
    assert len(harness.publisher.published) == 2


async def test_events_left_unmarked_by_a_stopped_process_are_published_again_by_the_relay(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(92), page_id=page)
    await harness.service.handle(to_events("messenger", page, [customer.text()])[0])
    first = list(harness.publisher.published)

    # Another process (the next start) relays what this one published but did not mark.
    assert await Outbox(harness.sessions, harness.publisher).flush() == 2
    again = harness.publisher.published[len(first) :]
    # The same ids: JetStream's duplicate window drops the repeats.
    assert [h["Nats-Msg-Id"] for _, _, h in again] == [h["Nats-Msg-Id"] for _, _, h in first]


async def test_published_events_are_deleted_after_the_retention_and_nothing_else(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(93)
    for customer in [Customer.new("messenger", rng, page_id=page) for _ in range(3)]:
        await harness.service.handle(to_events("messenger", page, [customer.text()])[0])
    await harness.outbox.mark_published()
    rows = await harness.outbox_events()
    assert len(rows) == 6
    # Two published long ago, two published just now, two not published at all.
    old, recent, unpublished = rows[:2], rows[2:4], rows[4:]
    async with harness.sessions() as session:
        await session.execute(
            text("UPDATE outbox SET published_at = now() - interval '2 days' WHERE event_id = ANY(:ids)"),
            {"ids": [r["event_id"] for r in old]},
        )
        await session.execute(
            text("UPDATE outbox SET published_at = NULL WHERE event_id = ANY(:ids)"),
            {"ids": [r["event_id"] for r in unpublished]},
        )
        await session.commit()

    assert await harness.outbox.prune() == 2

    left = {row["event_id"] for row in await harness.outbox_events()}
    assert left == {r["event_id"] for r in recent + unpublished}
