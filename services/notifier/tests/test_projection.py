"""The notifier's projection of crm's deals: the same row whatever the order and repetition
of the events (applied one by one, all at once, or through the bus), and a row begun by
any of them."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.contracts import Envelope
from jggl_common.db import session_factory
from notifier.projection import Projection

from .conftest import Bus, StartNotifier, eventually, next_id, rows
from .deal_events import Deal

_ROW = (
    "SELECT deal_id, assignee_id, status, stage, platform, contact_name, last_customer_at, last_customer_text,"
    " last_reply_at, ai_version, ai_summary, ai_intent, ai_temperature FROM deals WHERE deal_id = $1"
)


def history(manager: int) -> tuple[Deal, list[Envelope], dict[str, Any]]:
    """A deal's life: created, first message, taken, answered, written again, qualified,
    analysed three times; with the row it must end as."""
    deal = Deal(name="Ann <Customer>")
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    events: list[Envelope] = [deal.created(t), deal.received(t + timedelta(seconds=1), "Hi", first=True)]
    events.append(deal.updated(t + timedelta(minutes=2), assignee_id=manager))
    events.append(deal.sent(t + timedelta(minutes=3), "Hello! How can I help?", manager, response_seconds=180))
    events.append(deal.received(t + timedelta(minutes=5), "How much is it?"))
    events.append(deal.updated(t + timedelta(minutes=6), stage="qualified"))
    events += [
        deal.analysed(1, "Asked hello"),
        deal.analysed(2, "Asks the price (heuristic)"),
        deal.analysed(2, "Asks the price", provider="gemini"),
    ]
    expected = {
        "deal_id": deal.id,
        "assignee_id": manager,
        "status": "open",
        "stage": "qualified",
        "platform": "messenger",
        "contact_name": "Ann <Customer>",
        "last_customer_at": t + timedelta(minutes=5),
        "last_customer_text": "How much is it?",
        "last_reply_at": t + timedelta(minutes=3),
        "ai_version": 2,
        "ai_summary": "Asks the price",
        "ai_intent": "price",
        "ai_temperature": "warm",
    }
    return deal, events, expected


async def test_any_order_and_repetition_gives_the_same_row(engine: AsyncEngine) -> None:
    projection = Projection(session_factory(engine))
    manager = next_id()
    for seed in range(8):
        deal, events, expected = history(manager)
        rng = random.Random(seed)
        shuffled = events + rng.sample(events, 4)  # some delivered twice
        rng.shuffle(shuffled)
        for event in shuffled:
            await projection.apply(event)
        assert await rows(engine, _ROW, deal.id) == [expected], f"order {[e.type for e in shuffled]}"
        replies = await rows(engine, "SELECT user_id, response_seconds FROM replies WHERE deal_id = $1", deal.id)
        assert replies == [{"user_id": manager, "response_seconds": 180}]


async def test_concurrent_events_give_the_same_row(engine: AsyncEngine) -> None:
    projection = Projection(session_factory(engine))
    deal, events, expected = history(next_id())
    await asyncio.gather(*(projection.apply(event) for event in events + events))
    assert await rows(engine, _ROW, deal.id) == [expected]


async def test_awaiting_a_reply_follows_the_newest_message_and_reply(engine: AsyncEngine) -> None:
    projection = Projection(session_factory(engine))
    manager = next_id()
    deal = Deal(assignee_id=manager)
    t = datetime.now(UTC) - timedelta(minutes=30)
    await projection.apply(deal.received(t, "Hi", first=True))
    assert [d.deal_id for d in (await projection.waiting(manager)).mine] == [deal.id]
    await projection.apply(deal.sent(t + timedelta(minutes=1), "Hello", manager))
    assert (await projection.waiting(manager)).mine == []
    await projection.apply(deal.received(t - timedelta(minutes=5), "an older message arriving late", kind="text"))
    assert (await projection.waiting(manager)).mine == []
    await projection.apply(deal.received(t + timedelta(minutes=2), None, kind="image", attachments=[{"type": "image"}]))
    (waiting,) = (await projection.waiting(manager)).mine
    assert waiting.last_customer_text == "[image]"


async def test_the_bus_feeds_the_projection(start_notifier: StartNotifier, bus: Bus, engine: AsyncEngine) -> None:
    await start_notifier()
    await start_notifier()  # two replicas share the durable consumers
    deal, events, expected = history(next_id())
    shuffled = list(events)
    random.Random(7).shuffle(shuffled)
    await bus.publish(*shuffled)

    async def projected() -> bool:
        return await rows(engine, _ROW, deal.id) == [expected]

    await eventually(projected)
