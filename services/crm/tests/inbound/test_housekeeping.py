"""Leftovers of the inbound rules are kept for a while, not for ever."""

from __future__ import annotations

import random
import time
from datetime import timedelta

from crm.inbound.housekeeping import prune_leftovers
from jggl_common.contracts import utcnow
from jggl_sandbox.meta_webhooks import Customer

DAY_MS = 24 * 3600 * 1000


async def test_old_updates_for_messages_that_never_came_and_old_receipts_go_recent_ones_stay(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(61), page_id=page)
    now_ms = int(time.time() * 1000)
    awaited = customer.echo(text="Наша відповідь", timestamp_ms=now_ms - DAY_MS - 60_000)
    items = [
        # Ten days ago: a reaction to a message crm never received, and a read receipt.
        customer.reaction("react", mid="m_never_arrived", timestamp_ms=now_ms - 10 * DAY_MS),
        customer.read(timestamp_ms=now_ms - 10 * DAY_MS),
        # Yesterday: a reaction to a reply still on its way, and a read receipt.
        customer.reaction("react", mid=awaited["message"]["mid"], timestamp_ms=now_ms - DAY_MS),
        customer.read(timestamp_ms=now_ms - DAY_MS),
    ]
    for event in to_events("messenger", page, items):
        await harness.service.handle(event)
    assert await harness.count("pending_updates") == 2
    assert await harness.count("receipts") == 2

    deleted = await prune_leftovers(harness.sessions, utcnow() - timedelta(days=7), batch=1)

    assert deleted == {"pending_updates": 1, "receipts": 1}
    (waiting,) = await harness.rows("SELECT mid FROM pending_updates")
    assert waiting["mid"] == awaited["message"]["mid"]
    (receipt,) = await harness.rows("SELECT occurred_at FROM receipts")
    assert receipt["occurred_at"] > utcnow() - timedelta(days=2)
    # What stayed still does its job when the message lands.
    (event,) = to_events("messenger", page, [awaited])
    await harness.service.handle(event)
    message = await harness.message(awaited["message"]["mid"])
    assert message["reactions"]
    assert message["read_at"] is not None
    assert await harness.count("pending_updates") == 0
    assert await prune_leftovers(harness.sessions, utcnow() - timedelta(days=7)) == {
        "pending_updates": 0,
        "receipts": 0,
    }
