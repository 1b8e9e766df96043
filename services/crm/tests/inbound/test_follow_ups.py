"""Customers who write again: many conversations at once, interleaved and repeated,
applied by concurrent groups; no group waits for a conversation it does not touch."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY
from sqlalchemy import text

from crm.inbound import repository as repo
from crm.inbound.service import InboundService
from jggl_sandbox.meta_webhooks import Customer

START_MS = 1_767_225_600_000
T0 = datetime.fromtimestamp(START_MS / 1000, UTC)


def _split_groups() -> float:
    return REGISTRY.get_sample_value("crm_inbound_groups_split_total") or 0.0


def _transactions() -> tuple[float, float]:
    return (
        REGISTRY.get_sample_value("crm_inbound_items_per_transaction_count") or 0.0,
        REGISTRY.get_sample_value("crm_inbound_items_per_transaction_sum") or 0.0,
    )


async def test_many_customers_writing_again_at_once_store_each_message_once_with_the_right_response_figures(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(2024)
    service = InboundService(harness.sessions, harness.outbox, max_transactions=2, max_items_per_transaction=8)
    customers = [Customer.new("messenger", rng, page_id=page) for _ in range(16)]
    # Each customer writes at 0 s; the page answers at 30 s; the customer writes again at
    # 60 s and 90 s; the even ones are answered again at 150 s.
    openers = [to_events("messenger", page, [c.text(timestamp_ms=START_MS)])[0] for c in customers]
    for event in openers:
        await service.handle(event)
    threads = []
    for n, c in enumerate(customers):
        items = [
            c.echo(timestamp_ms=START_MS + 30_000),
            c.text(timestamp_ms=START_MS + 60_000),
            c.text(timestamp_ms=START_MS + 90_000),
        ]
        if n % 2 == 0:
            items.append(c.echo(timestamp_ms=START_MS + 150_000))
        threads.append(to_events("messenger", page, items))
    # Interleaved across customers, each item delivered twice, every one in flight at once.
    interleaved = [thread[i] for i in range(4) for thread in threads if i < len(thread)]
    deliveries = interleaved + list(reversed(interleaved))
    split, (groups_before, items_before) = _split_groups(), _transactions()

    outcomes = await asyncio.gather(*(service.handle(event) for event in deliveries))

    assert all(outcome.applied for outcome in outcomes)
    assert _split_groups() == split  # every group committed as one transaction
    new_groups, new_items = _transactions()
    assert new_items - items_before == len(deliveries)
    assert new_groups - groups_before < len(deliveries) / 2  # items really were applied together
    mids = await harness.rows(
        "SELECT m.mid, count(*) AS n FROM messages m JOIN conversations v ON v.id = m.conversation_id"
        " JOIN channels ch ON ch.id = v.channel_id WHERE ch.external_id = :page GROUP BY m.mid",
        page=page,
    )
    assert len(mids) == 16 * 4 + 8
    assert {row["n"] for row in mids} == {1}
    deals = await harness.rows(
        "SELECT c.external_id, d.first_response_seconds, d.first_response_at, d.awaiting_reply_since,"
        " d.last_message_at, (SELECT count(*) FROM deals other WHERE other.conversation_id = d.conversation_id)"
        " AS deals FROM deals d JOIN contacts c ON c.id = d.contact_id JOIN channels ch ON ch.id = c.channel_id"
        " WHERE ch.external_id = :page",
        page=page,
    )
    by_customer = {row["external_id"]: row for row in deals}
    assert len(by_customer) == 16
    for n, c in enumerate(customers):
        deal = by_customer[c.user_id]
        assert deal["deals"] == 1
        assert deal["first_response_seconds"] == 30
        assert deal["first_response_at"] == T0 + timedelta(seconds=30)
        if n % 2 == 0:
            assert deal["awaiting_reply_since"] is None
            assert deal["last_message_at"] == T0 + timedelta(seconds=150)
        else:
            assert deal["awaiting_reply_since"] == T0 + timedelta(seconds=60)
            assert deal["last_message_at"] == T0 + timedelta(seconds=90)
    replies = await harness.rows(
        "SELECT m.sent_at, m.response_seconds FROM messages m JOIN conversations v ON v.id = m.conversation_id"
        " JOIN channels ch ON ch.id = v.channel_id WHERE ch.external_id = :page AND m.direction = 'out'",
        page=page,
    )
    assert sorted({(r["sent_at"] - T0).seconds: r["response_seconds"] for r in replies}.items()) == [
        (30, 30),
        (150, 90),
    ]
    conversations = await harness.rows(
        "SELECT v.last_inbound_at, v.last_message_at FROM conversations v JOIN channels ch ON ch.id = v.channel_id"
        " WHERE ch.external_id = :page",
        page=page,
    )
    assert {row["last_inbound_at"] for row in conversations} == {T0 + timedelta(seconds=90)}
    announced = [e for e in await harness.outbox_events() if e["subject"] == "crm.message.received"]
    mids_announced = [json.loads(e["payload"])["data"]["mid"] for e in announced]
    assert len(mids_announced) == len(set(mids_announced))
    page_mids = {row["mid"] for row in mids}
    assert len([mid for mid in mids_announced if mid in page_mids]) == 16 * 3


async def test_a_conversation_held_by_another_transaction_holds_up_none_of_the_others(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(77)
    service = InboundService(harness.sessions, harness.outbox, max_transactions=2, max_items_per_transaction=8)
    customers = [Customer.new("instagram", rng, page_id=page) for _ in range(9)]
    for c in customers:
        await service.handle(to_events("instagram", page, [c.text()])[0])
    held, others = customers[0], customers[1:]
    (conversation_id,) = [
        row["id"]
        for row in await harness.rows(
            "SELECT v.id FROM conversations v JOIN contacts c ON c.id = v.contact_id WHERE c.external_id = :customer",
            customer=held.user_id,
        )
    ]
    split = _split_groups()

    async with harness.sessions() as blocker:
        # A reply being sent in another transaction holds the conversation's lock.
        await blocker.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(current_schema()), :id)"), {"id": conversation_id}
        )
        stuck = asyncio.create_task(service.handle(to_events("instagram", page, [held.text()])[0]))
        await asyncio.sleep(0.2)
        # Two rounds of everyone else's messages, interleaved, handled while it waits.
        events = [to_events("instagram", page, [c.text()])[0] for _ in range(2) for c in others]
        outcomes = await asyncio.wait_for(asyncio.gather(*(service.handle(e) for e in events)), timeout=20)
        assert all(outcome.applied for outcome in outcomes)
        waiting = await harness.rows(
            "SELECT l.locktype, l.objid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE NOT l.granted AND a.datname = current_database()"
        )
        # The one waiting lock, if the held conversation's item is waiting already, is on it.
        assert all(row["locktype"] == "advisory" and row["objid"] == conversation_id for row in waiting)
        assert not stuck.done()
        await blocker.rollback()

    assert (await asyncio.wait_for(stuck, timeout=20)).applied
    assert _split_groups() == split
    counts = await harness.rows(
        "SELECT c.external_id, count(m.id) AS n FROM messages m JOIN conversations v ON v.id = m.conversation_id"
        " JOIN contacts c ON c.id = v.contact_id JOIN channels ch ON ch.id = c.channel_id"
        " WHERE ch.external_id = :page GROUP BY c.external_id",
        page=page,
    )
    assert {row["external_id"]: row["n"] for row in counts} == {
        held.user_id: 2,
        **{c.user_id: 3 for c in others},
    }


async def test_an_inbound_transaction_plans_without_jit_or_parallel_workers_and_only_it(harness) -> None:
    async with harness.sessions() as session:
        before = (await session.execute(text("SELECT current_setting('jit')"))).scalar_one()
        await repo.plan_for_few_rows(session)
        inside = (
            await session.execute(
                text(
                    "SELECT current_setting('jit'), current_setting('max_parallel_workers_per_gather'),"
                    " current_setting('enable_seqscan')"
                )
            )
        ).one()
        await session.commit()
        after = (await session.execute(text("SELECT current_setting('jit')"))).scalar_one()

    assert tuple(inside) == ("off", "0", "off")
    assert after == before  # the connection goes back to the pool as it came
