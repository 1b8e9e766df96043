"""Deals: exactly once under races, a new deal after a closed one, response tracking."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from crm.inbound.items import InvalidMetaItem
from crm.inbound.service import InboundService
from jggl_sandbox.meta_webhooks import Customer


async def test_the_same_first_message_at_the_same_instant_creates_everything_once(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(31)
    customers = [Customer.new(rng.choice(["messenger", "instagram"]), rng, page_id=page) for _ in range(4)]
    firsts = [(c, to_events(c.platform, page, [c.text()])[0]) for c in customers]

    # Eight deliveries of each first message, all in flight together, each in its own session.
    await asyncio.gather(*(harness.service.handle(event) for _, event in firsts for _ in range(8)))

    assert await harness.count("contacts") == 4
    assert await harness.count("conversations") == 4
    assert await harness.count("deals") == 4
    assert await harness.count("messages") == 4
    subjects = [e["subject"] for e in await harness.outbox_events()]
    assert subjects.count("crm.deal.created") == 4
    assert subjects.count("crm.message.received") == 4
    published = [subject for subject, _, _ in harness.publisher.published]
    assert sorted(published) == sorted(subjects)


async def test_a_customer_writing_after_the_deal_was_closed_opens_a_new_one(harness, to_events, unique_page_id) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(32), page_id=page)
    first = customer.text("I want the blue one")
    late_copy = first  # the same message, delivered again after the deal was closed
    events = to_events("messenger", page, [first, customer.echo(text="Paid, thanks!")])
    for event in events:
        await harness.service.handle(event)
    async with harness.sessions() as session:
        await session.execute(text("UPDATE deals SET status = 'won', closed_at = now()"))
        await session.commit()

    (again,) = to_events("messenger", page, [late_copy])
    await harness.service.handle(again)
    assert await harness.count("deals") == 1  # a repeat does not reopen anything

    (next_message,) = to_events("messenger", page, [customer.text("Do you also have it in red?")])
    await harness.service.handle(next_message)

    won, new = await harness.deals()
    assert (won["status"], new["status"], new["stage"]) == ("won", "open", "new")
    assert won["conversation_id"] == new["conversation_id"]
    assert new["last_message_text"] == "Do you also have it in red?"
    assert new["awaiting_reply_since"] is not None
    assert won["awaiting_reply_since"] is None
    created = [json.loads(e["payload"]) for e in await harness.outbox_events() if e["subject"] == "crm.deal.created"]
    assert [c["data"]["id"] for c in created] == [won["id"], new["id"]]
    received = [json.loads(e["payload"]) for e in await harness.outbox_events()]
    last = received[-1]["data"]
    assert (last["deal_id"], last["is_first_message"]) == (new["id"], True)


async def test_a_late_message_written_before_the_close_stays_in_the_closed_deal(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    customer = Customer.new("instagram", random.Random(33), page_id=page)
    early = customer.text("one more thing")  # written first, delivered last
    items = [customer.text("hi"), customer.echo(text="hello"), customer.text("bye")]
    for event in to_events("instagram", page, [items[0], items[2], items[1]]):
        await harness.service.handle(event)
    async with harness.sessions() as session:
        await session.execute(text("UPDATE deals SET status = 'lost', lost_reason = 'no answer', closed_at = now()"))
        await session.commit()

    # Written before the deal's last message: it belongs to that deal, closed or not.
    early["timestamp"] = items[0]["timestamp"] - 1000
    (event,) = to_events("instagram", page, [early])
    await harness.service.handle(event)

    (deal,) = await harness.deals()
    assert deal["status"] == "lost"
    assert await harness.count("messages") == 4


async def test_response_tracking_measures_each_reply_from_the_earliest_unanswered_message(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(34), page_id=page)
    start = 1_767_225_600_000
    items = [
        customer.text("hello?", timestamp_ms=start),
        customer.text("anyone?", timestamp_ms=start + 60_000),
        customer.echo(text="Hi! Sorry for the wait", timestamp_ms=start + 300_000),
        customer.echo(text="How can I help?", timestamp_ms=start + 310_000),
        customer.text("price of the shirt", timestamp_ms=start + 400_000),
        customer.echo(text="1450 UAH", timestamp_ms=start + 460_000),
        customer.text("ok, thanks", timestamp_ms=start + 500_000),
    ]
    events = to_events("messenger", page, items)

    # The echoes come first: the answers are still matched to the right questions.
    for event in [events[5], events[2], events[3], events[0], events[6], events[4], events[1]]:
        await harness.service.handle(event)

    replies = [m for m in await harness.messages() if m["direction"] == "out"]
    assert [(m["text"], m["response_seconds"], m["author_label"]) for m in replies] == [
        ("Hi! Sorry for the wait", 300, "Meta inbox"),
        ("How can I help?", None, "Meta inbox"),
        ("1450 UAH", 60, "Meta inbox"),
    ]
    (deal,) = await harness.deals()
    assert deal["first_response_seconds"] == 300
    assert deal["first_response_at"] == replies[0]["sent_at"]
    last_question = next(m for m in await harness.messages() if m["text"] == "ok, thanks")
    assert deal["awaiting_reply_since"] == last_question["sent_at"]
    assert deal["last_message_text"] == "ok, thanks"
    (conversation,) = await harness.rows("SELECT * FROM conversations")
    assert conversation["last_inbound_at"] == last_question["sent_at"]


async def test_after_a_close_the_page_follow_up_and_the_next_lead_split_the_same_in_any_order(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(35), page_id=page)
    start = 1_767_225_600_000
    bought = customer.text("I'll take it", timestamp_ms=start)
    thanks = customer.echo(text="Thank you for your purchase!", timestamp_ms=start + 60_000)
    again = customer.text("Hi again, do you have gloves?", timestamp_ms=start + 3_600_000)
    answer = customer.echo(text="Yes, 300 UAH", timestamp_ms=start + 3_660_000)
    first, *after_close = to_events("messenger", page, [bought, thanks, again, answer])

    dumps = []
    for order in ((0, 1, 2), (1, 0, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1), (0, 2, 1)):
        await harness.reset()
        await harness.service.handle(first)
        async with harness.sessions() as session:
            await session.execute(text("UPDATE deals SET status = 'won', closed_at = now()"))
            await session.commit()
        for index in order:
            await harness.service.handle(after_close[index])
        dumps.append(await harness.dump())

    assert all(d == dumps[0] for d in dumps[1:])
    won, new = dumps[0]["deals"]
    assert won["status"] == "won"
    assert sorted(won["mids"]) == sorted([bought["message"]["mid"], thanks["message"]["mid"]])
    assert sorted(new["mids"]) == sorted([again["message"]["mid"], answer["message"]["mid"]])
    assert (new["status"], new["first_response_seconds"], new["awaiting_reply_since"]) == ("open", 60, None)
    assert won["first_response_seconds"] == 60


async def test_a_new_customers_message_under_a_stored_message_id_is_refused_and_changes_nothing(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(77)
    first, second = Customer.new("messenger", rng, page_id=page), Customer.new("messenger", rng, page_id=page)
    original = first.text("Привіт")
    copy = second.text("Hello")
    copy["message"]["mid"] = original["message"]["mid"]  # Meta never reuses a mid: this is bad input
    await harness.service.handle(to_events("messenger", page, [original])[0])

    with pytest.raises(InvalidMetaItem, match="already stored in another conversation"):
        await harness.service.handle(to_events("messenger", page, [copy])[0])

    assert await harness.count("contacts") == 1
    assert await harness.count("deals") == 1
    assert [row["text"] for row in await harness.rows("SELECT text FROM messages")] == ["Привіт"]


@pytest.mark.parametrize("kind", ["text", "image", "quick_reply"])
async def test_a_first_message_ends_the_same_whether_its_conversation_is_new_or_not(
    harness, to_events, unique_page_id, kind
) -> None:
    """A new customer's first message takes a one-statement path; a conversation that began
    with something else (here a read receipt) takes the general one. The result is the same."""
    page = unique_page_id()
    rng = random.Random(88)
    fresh, known = Customer.new("messenger", rng, page_id=page), Customer.new("messenger", rng, page_id=page)

    def first(customer: Customer) -> dict[str, Any]:
        if kind == "image":
            return customer.attachment("image", timestamp_ms=1_767_225_600_000)
        if kind == "quick_reply":
            return customer.quick_reply(timestamp_ms=1_767_225_600_000)
        return customer.text("Скільки коштує доставка?", timestamp_ms=1_767_225_600_000)

    fresh_item, known_item = first(fresh), first(known)
    known_item["message"] = {**fresh_item["message"], "mid": known_item["message"]["mid"]}
    await harness.service.handle(to_events("messenger", page, [known.read(timestamp_ms=1_767_225_500_000)])[0])
    for item in (fresh_item, known_item):
        await harness.service.handle(to_events("messenger", page, [item])[0])

    def per_contact(rows: list[dict[str, Any]], drop: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        return {row.pop("contact"): {k: v for k, v in row.items() if k not in drop} for row in rows}

    deals = per_contact(
        await harness.rows(
            "SELECT c.external_id AS contact, d.*, d.search_vector::text AS search FROM deals d"
            " JOIN contacts c ON c.id = d.contact_id"
        ),
        ("id", "conversation_id", "contact_id", "created_at", "updated_at", "search_vector"),
    )
    messages = per_contact(
        await harness.rows(
            "SELECT c.external_id AS contact, m.* FROM messages m JOIN conversations v ON v.id = m.conversation_id"
            " JOIN contacts c ON c.id = v.contact_id"
        ),
        ("id", "conversation_id", "deal_id", "mid", "created_at"),
    )
    activities = per_contact(
        await harness.rows(
            "SELECT c.external_id AS contact, a.kind, a.actor_label, a.data FROM activities a"
            " JOIN deals d ON d.id = a.deal_id JOIN contacts c ON c.id = d.contact_id"
        ),
        (),
    )
    conversations = per_contact(
        await harness.rows(
            "SELECT c.external_id AS contact, v.last_message_at, v.last_inbound_at FROM conversations v"
            " JOIN contacts c ON c.id = v.contact_id"
        ),
        (),
    )
    events: dict[str, Any] = {}
    for event in await harness.outbox_events():
        data = json.loads(event["payload"])["data"]
        contact = (data.get("contact") or data["deal"]["contact"])["external_id"] if "deal" in data else None
        contact = contact or data["contact"]["external_id"]
        for key in ("id", "conversation_id", "created_at", "message_id", "deal_id", "mid"):
            data.pop(key, None)
        data["contact"] = {k: v for k, v in data["contact"].items() if k not in ("id", "external_id", "display_name")}
        events.setdefault(contact, []).append((event["subject"], data))

    for table in (deals, messages, activities, conversations, events):
        assert table[fresh.user_id] == table[known.user_id], table
    assert deals[fresh.user_id]["awaiting_reply_since"] is not None
    assert deals[fresh.user_id]["last_message_text"]


async def test_items_arriving_together_share_a_transaction_and_a_bad_one_spoils_none_of_the_others(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(93)
    stored = Customer.new("messenger", rng, page_id=page)
    original = stored.text("Перше")
    await harness.service.handle(to_events("messenger", page, [original])[0])
    newcomers = [Customer.new("messenger", rng, page_id=page) for _ in range(5)]
    good = [to_events("messenger", page, [c.text("Привіт")])[0] for c in newcomers]
    thief = Customer.new("messenger", rng, page_id=page).text("Hello")
    thief["message"]["mid"] = original["message"]["mid"]  # a stored mid under a new customer
    bad = to_events("messenger", page, [thief])[0]

    outcomes = await asyncio.gather(
        *(harness.service.handle(e) for e in [*good[:3], bad, *good[3:]]), return_exceptions=True
    )

    assert isinstance(outcomes[3], InvalidMetaItem)
    assert all(not isinstance(o, BaseException) and o.applied for i, o in enumerate(outcomes) if i != 3)
    assert await harness.count("contacts") == 6
    assert await harness.count("deals") == 6
    texts = sorted(row["text"] for row in await harness.rows("SELECT text FROM messages"))
    assert texts == ["Перше"] + ["Привіт"] * 5


async def test_new_customers_arriving_together_end_as_if_they_had_come_one_by_one(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(95)
    customers = [Customer.new("messenger", rng, page_id=page) for _ in range(7)]
    # The first customer only reads: it makes the page known before the others arrive.
    opener = to_events("messenger", page, [customers[0].read()])[0]
    items = [customers[1].text("Привіт"), customers[2].attachment("image"), customers[3].quick_reply()]
    items += [customers[4].text("Ціна?"), customers[4].text("Є доставка?"), customers[5].read(), customers[6].text()]
    events = to_events("messenger", page, items)

    async def outcome() -> tuple[dict[str, Any], list[Any]]:
        activities = await harness.rows(
            "SELECT c.external_id, a.kind, a.data FROM activities a JOIN deals d ON d.id = a.deal_id"
            " JOIN contacts c ON c.id = d.contact_id ORDER BY 1, 2"
        )
        return await harness.dump(), activities

    await harness.service.handle(opener)
    for event in events:
        await harness.service.handle(event)
    one_by_one = await outcome()
    await harness.reset()
    await asyncio.sleep(1.1)  # the service's cached channel id went with the reset

    await harness.service.handle(opener)
    await asyncio.gather(*(harness.service.handle(event) for event in events))
    together = await outcome()

    assert together == one_by_one
    assert len(one_by_one[0]["deals"]) == 5  # the two customers who only read have none


async def test_items_handled_while_the_transactions_are_busy_share_the_next_one(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(97)
    service = InboundService(harness.sessions, harness.outbox, max_transactions=1, max_items_per_transaction=6)
    await service.handle(to_events("messenger", page, [Customer.new("messenger", rng, page_id=page).read()])[0])
    events = to_events(
        "messenger", page, [Customer.new("messenger", rng, page_id=page).text("Привіт") for _ in range(11)]
    )
    transactions = REGISTRY.get_sample_value("crm_inbound_items_per_transaction_count") or 0.0

    async with harness.sessions() as blocker:
        # Another transaction keeps writers out of the outbox: the first item's transaction waits.
        await blocker.execute(text("LOCK TABLE outbox IN SHARE MODE"))
        first = asyncio.create_task(service.handle(events[0]))
        await asyncio.sleep(0.2)
        others = []
        for event in events[1:]:  # each in a loop turn of its own
            others.append(asyncio.create_task(service.handle(event)))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert not first.done()
        await blocker.rollback()
    outcomes = await asyncio.gather(first, *others)

    assert all(outcome.applied for outcome in outcomes)
    assert await harness.count("deals") == 11
    # The first alone, then the ten that waited, in groups of at most six.
    assert (REGISTRY.get_sample_value("crm_inbound_items_per_transaction_count") or 0.0) - transactions == 3
