"""Meta does not keep order and JetStream redelivers: any order, any repeats, same result."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from jggl_sandbox.meta_webhooks import Customer


def conversation(platform: str, page_id: str, seed: int, messages: int = 100) -> list[dict[str, Any]]:
    """A long chat: customer messages of every sort, page replies, and updates in between."""
    rng = random.Random(seed)
    customer = Customer.new(platform, rng, page_id=page_id)  # type: ignore[arg-type]
    items: list[dict[str, Any]] = [customer.get_started() if platform == "messenger" else customer.text()]
    stored = 1
    while stored < messages:
        roll = rng.random()
        if roll < 0.30:
            items.append(customer.text())
        elif roll < 0.38:
            items.append(customer.attachment(rng.choice(["image", "video", "audio", "file"])))
        elif roll < 0.42:
            items.append(customer.quick_reply())
        elif roll < 0.46:
            items.append(customer.reply(mid=rng.choice(customer.page_mids or customer.own_mids)))
        elif roll < 0.48:
            items.append(customer.postback())
        elif roll < 0.70:
            items.append(customer.echo(text=f"reply {stored}"))
        else:
            stored -= 1  # an update, not a message
            kind = rng.random()
            targets = customer.page_mids + customer.own_mids
            if kind < 0.35:
                action = rng.choice(["react", "react", "unreact"])
                items.append(customer.reaction(action, mid=rng.choice(targets)))  # type: ignore[arg-type]
            elif kind < 0.55:
                items.append(customer.read())
            elif kind < 0.75 and platform == "messenger":
                items.append(customer.delivery(with_mids=rng.random() < 0.5))
            elif kind < 0.95 and platform == "messenger":
                items.append(customer.edit(mid=rng.choice(customer.own_mids)))
            elif kind < 0.95:
                alive = [m for m in customer.own_mids if m not in customer.deleted]
                items.append(customer.delete(mid=rng.choice(alive), as_string=rng.random() < 0.5))
            else:
                items.append(customer.referral(rng.choice(["ADS", "SHORTLINK"])))
        stored += 1
    return items


@pytest.mark.parametrize("platform", ["messenger", "instagram"])
async def test_shuffled_and_repeated_delivery_gives_the_in_order_state(
    harness, to_events, unique_page_id, platform
) -> None:
    page = unique_page_id()
    events = to_events(platform, page, conversation(platform, page, seed=11))

    await harness.feed(events)
    in_order = await harness.dump()
    await harness.reset()

    rng = random.Random(12)
    shuffled = events + rng.sample(events, k=len(events) // 3)
    rng.shuffle(shuffled)
    await harness.feed(shuffled, concurrency=8)
    out_of_order = await harness.dump()

    assert len(in_order["messages"]) == 100
    assert out_of_order == in_order
    # The conversation exercised what it should have.
    messages = in_order["messages"]
    assert any(m["reactions"] for m in messages)
    assert any(m["read_at"] for m in messages)
    assert any(m["response_seconds"] is not None for m in messages)
    assert any(m["is_edited"] for m in messages) if platform == "messenger" else any(m["is_deleted"] for m in messages)
    (deal,) = in_order["deals"]
    assert deal["first_response_seconds"] is not None
    assert in_order["pending"] == []
    assert await harness.count("deals") == 1
    assert await harness.count("contacts") == 1


async def test_updates_before_their_message_wait_and_then_apply(harness, to_events, unique_page_id) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(21), page_id=page)
    question = customer.text("How much?")
    answer = customer.echo(text="100 UAH")
    answer_mid = answer["message"]["mid"]
    reaction = customer.reaction("react", mid=answer_mid)
    delivery = customer.delivery()
    read = customer.read()
    edit = customer.edit(mid=question["message"]["mid"], text="How much is it?")
    events = to_events("messenger", page, [question, answer, reaction, delivery, read, edit])
    by_kind = {e.data.kind: e for e in events}

    for kind in ("reaction", "delivery", "read", "edit"):
        await harness.service.handle(by_kind[kind])
    assert await harness.count("messages") == 0
    assert {r["kind"] for r in await harness.rows("SELECT kind FROM pending_updates")} == {
        "reaction",
        "delivery",
        "edit",
    }

    await harness.service.handle(by_kind["message"])
    await harness.service.handle(by_kind["echo"])

    asked = await harness.message(question["message"]["mid"])
    answered = await harness.message(answer_mid)
    assert asked["text"] == "How much is it?"
    assert asked["is_edited"] is True
    (shown,) = answered["reactions"].values()
    assert shown["emoji"] == reaction["reaction"]["emoji"]
    assert answered["delivered_at"] is not None
    assert answered["read_at"] is not None
    assert await harness.count("pending_updates") == 0
    (deal,) = await harness.deals()
    assert deal["last_message_text"] == "100 UAH"
    assert deal["awaiting_reply_since"] is None
    assert deal["first_response_seconds"] == int((answered["sent_at"] - asked["sent_at"]).total_seconds())


async def test_a_delete_before_its_message_leaves_it_unsent(harness, to_events, unique_page_id) -> None:
    page = unique_page_id()
    customer = Customer.new("instagram", random.Random(22), page_id=page)
    message = customer.text("oops, wrong chat")
    unsend = customer.delete(mid=message["message"]["mid"], as_string=True)
    (msg_event, delete_event) = to_events("instagram", page, [message, unsend])

    await harness.service.handle(delete_event)
    await harness.service.handle(msg_event)
    await harness.service.handle(delete_event)

    row = await harness.message(message["message"]["mid"])
    assert row["is_deleted"] is True
    assert row["text"] is None
    (deal,) = await harness.deals()
    assert deal["last_message_text"] == "[deleted]"
    # Nothing to notify a manager about: it was taken back before anyone could see it.
    assert [e["subject"] for e in await harness.outbox_events()] == ["crm.deal.created"]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_reactions_in_any_order_end_with_the_newest(harness, to_events, unique_page_id, order) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(23), page_id=page)
    echo = customer.echo(text="Here is the catalogue")
    mid = echo["message"]["mid"]
    updates = [
        customer.reaction("react", mid=mid),
        customer.reaction("unreact", mid=mid),
        customer.reaction("react", mid=mid),
    ]
    events = to_events("messenger", page, [echo, *updates])

    await harness.service.handle(events[0])
    for index in order:
        await harness.service.handle(events[1 + index])
    await harness.service.handle(events[1])  # a repeat changes nothing

    row = await harness.message(mid)
    assert list(row["reactions"]) == [customer.user_id]
    assert row["reactions"][customer.user_id]["emoji"] == updates[2]["reaction"]["emoji"]


async def test_edits_keep_the_latest_text_whatever_the_order(harness, to_events, unique_page_id) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(24), page_id=page)
    message = customer.text("v0")
    mid = message["message"]["mid"]
    edits = [customer.edit(mid=mid, text=f"v{n}") for n in (1, 2, 3)]
    events = to_events("messenger", page, [message, *edits])

    for event in [events[3], events[0], events[1], events[3], events[2]]:
        await harness.service.handle(event)

    row = await harness.message(mid)
    assert (row["text"], row["edit_count"], row["is_edited"]) == ("v3", 3, True)
