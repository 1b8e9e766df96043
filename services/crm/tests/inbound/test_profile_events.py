"""``crm.contact.updated``: a fetched profile that changes what users see of the customer is
announced (stored in JetStream through crm's outbox), with the contact's open deals;
an unchanged profile and a failed fetch announce nothing."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from sqlalchemy import text

from crm.graph import Profile
from crm.profiles import ProfileEnricher
from crm.profiles.enricher import _Fetched
from jggl_common.outbox import Outbox
from jggl_common.testing import stored_events
from jggl_sandbox.meta_webhooks import Customer

SUBJECT = "crm.contact.updated"


@pytest.fixture
def outbox(harness, nats_env) -> Outbox:
    """crm's outbox publishing to a JetStream server of the test's own."""
    return Outbox(harness.sessions, nats_env.publisher)


@pytest.fixture
def enricher(harness, outbox, settings, graph) -> ProfileEnricher:
    return ProfileEnricher(harness.sessions, outbox, settings, graph)


async def _contact_id(harness, external_id: str) -> int:
    (row,) = await harness.rows("SELECT id FROM contacts WHERE external_id = :e", e=external_id)
    return int(row["id"])


async def _deal_ids(harness, contact_id: int) -> list[int]:
    rows = await harness.rows("SELECT id FROM deals WHERE contact_id = :c ORDER BY id", c=contact_id)
    return [int(row["id"]) for row in rows]


async def _execute(harness, sql: str, **params: Any) -> Any:
    async with harness.sessions() as session:
        result = await session.execute(text(sql), params)
        await session.commit()
        return result


async def _manager(harness) -> int:
    result = await _execute(
        harness,
        "INSERT INTO users (email, name, password_hash, role, is_active, created_at, updated_at)"
        " VALUES (:e, 'Ira', 'x', 'manager', true, now(), now()) RETURNING id",
        e=f"ira-{random.randrange(10**9)}@example.com",
    )
    return int(result.scalar_one())


async def _due_again(harness, contact_id: int) -> None:
    """Make the contact's profile due for another fetch (as if Meta were asked again)."""
    await _execute(
        harness,
        "UPDATE contacts SET profile_status = 'pending', profile_retry_at = NULL WHERE id = :id",
        id=contact_id,
    )


async def test_a_fetched_profile_is_announced_once_with_the_changes_and_the_open_deals(
    harness, enricher, graph_fake, nats_env, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    olena = Customer.new("messenger", random.Random(61), page_id=page)
    graph_fake.fake.add_profile(olena.user_id, first_name="Олена", last_name="Коваль", profile_pic="https://cdn/o.jpg")
    # An earlier deal, won, and the open one a manager works: only the open one is listed.
    await harness.service.handle(to_events("messenger", page, [olena.text()])[0])
    contact_id = await _contact_id(harness, olena.user_id)
    (won,) = await _deal_ids(harness, contact_id)
    await _execute(harness, "UPDATE deals SET status = 'won', closed_at = now() WHERE id = :id", id=won)
    await harness.service.handle(to_events("messenger", page, [olena.text()])[0])
    (_, open_deal) = await _deal_ids(harness, contact_id)
    ira = await _manager(harness)
    await _execute(harness, "UPDATE deals SET assignee_id = :a WHERE id = :id", a=ira, id=open_deal)

    assert await enricher.enrich(contact_id) == "fetched"

    (event,) = await stored_events(nats_env.js, SUBJECT, at_least=1)
    assert event["type"] == SUBJECT
    assert event["producer"] == "crm"
    assert event["data"] == {
        "contact": {
            "id": contact_id,
            "platform": "messenger",
            "external_id": olena.user_id,
            "display_name": "Олена Коваль",
            "username": None,
            "avatar_url": "https://cdn/o.jpg",
        },
        # Until now the customer was shown by the platform id, without a picture.
        "changes": {"display_name": [olena.user_id, "Олена Коваль"], "avatar_url": [None, "https://cdn/o.jpg"]},
        "open_deals": [{"id": open_deal, "assignee_id": ira}],
    }
    # Stored with the profile, in the same transaction.
    outbox = [row for row in await harness.outbox_events() if row["subject"] == SUBJECT]
    assert [row["event_id"] for row in outbox] == [event["id"]]


async def test_an_instagram_username_is_a_change_of_its_own(
    harness, enricher, graph_fake, nats_env, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    customer = Customer.new("instagram", random.Random(62), page_id=page)
    graph_fake.fake.add_profile(customer.user_id, name="", username="shop.lover")
    await harness.service.handle(to_events("instagram", page, [customer.text()])[0])
    contact_id = await _contact_id(harness, customer.user_id)
    (deal,) = await _deal_ids(harness, contact_id)

    assert await enricher.enrich(contact_id) == "fetched"

    (event,) = await stored_events(nats_env.js, SUBJECT, at_least=1)
    assert event["data"]["changes"] == {
        "display_name": [customer.user_id, "@shop.lover"],
        "username": [None, "shop.lover"],
    }
    assert event["data"]["contact"]["display_name"] == "@shop.lover"
    assert event["data"]["open_deals"] == [{"id": deal, "assignee_id": None}]


async def test_the_same_profile_fetched_again_announces_nothing_and_a_new_name_announces_itself(
    harness, enricher, graph_fake, nats_env, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(63), page_id=page)
    graph_fake.fake.add_profile(customer.user_id, first_name="Марта", last_name="Лис", profile_pic="https://cdn/m.jpg")
    await harness.service.handle(to_events("messenger", page, [customer.text()])[0])
    contact_id = await _contact_id(harness, customer.user_id)
    assert await enricher.enrich(contact_id) == "fetched"
    assert len(await stored_events(nats_env.js, SUBJECT, at_least=1)) == 1

    await _due_again(harness, contact_id)
    assert await enricher.enrich(contact_id) == "fetched"

    assert len(graph_fake.fake.calls(customer.user_id)) == 2  # Meta was asked again...
    assert len(await stored_events(nats_env.js, SUBJECT, idle=0.5)) == 1  # ...and nothing changed
    assert len([row for row in await harness.outbox_events() if row["subject"] == SUBJECT]) == 1

    # She married: only the name changed (the picture is the same).
    graph_fake.fake.add_profile(customer.user_id, first_name="Марта", last_name="Вовк", profile_pic="https://cdn/m.jpg")
    await _due_again(harness, contact_id)
    assert await enricher.enrich(contact_id) == "fetched"

    events = await stored_events(nats_env.js, SUBJECT, at_least=2)
    assert len(events) == 2
    assert events[1]["data"]["changes"] == {"display_name": ["Марта Лис", "Марта Вовк"]}
    assert events[1]["data"]["contact"]["display_name"] == "Марта Вовк"


async def test_a_failed_fetch_announces_nothing(
    harness, enricher, graph_fake, nats_env, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(64)
    unknown, throttled = Customer.new("messenger", rng, page_id=page), Customer.new("messenger", rng, page_id=page)
    graph_fake.fake.fail_next(1, code=100, subcode=33, match=unknown.user_id)
    graph_fake.fake.fail_next(1, code=613, match=throttled.user_id)
    for customer in (unknown, throttled):
        await harness.service.handle(to_events("messenger", page, [customer.text()])[0])

    assert await enricher.enrich(await _contact_id(harness, unknown.user_id)) == "failed"
    assert await enricher.enrich(await _contact_id(harness, throttled.user_id)) == "retry"

    assert await stored_events(nats_env.js, SUBJECT, idle=0.5) == []
    assert [row for row in await harness.outbox_events() if row["subject"] == SUBJECT] == []


async def test_a_batch_announces_each_changed_contact_also_the_one_written_after_its_lock_was_released(
    harness, enricher, nats_env, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(65)
    customers = [Customer.new("messenger", rng, page_id=page) for _ in range(3)]
    for event in to_events("messenger", page, [c.text() for c in customers]):
        await harness.service.handle(event)
    first, second, third = [await _contact_id(harness, c.user_id) for c in customers]
    # The third one already shows this very profile: nothing to announce for it.
    await _execute(harness, "UPDATE contacts SET name = 'Третя' WHERE id = :id", id=third)

    async with harness.sessions() as holder:
        await holder.execute(text("SELECT 1 FROM contacts WHERE id = :id FOR UPDATE"), {"id": second})
        writing = asyncio.create_task(
            enricher._store_profiles(
                [
                    _Fetched(second, Profile(name="Друга")),
                    _Fetched(first, Profile(name="Перша")),
                    _Fetched(third, Profile(name="Третя")),
                ]
            )
        )
        # The free contacts are written and announced while the other one is held.
        (announced,) = await stored_events(nats_env.js, SUBJECT, at_least=1)
        assert announced["data"]["contact"]["id"] == first
        assert not writing.done()
        await holder.commit()
    await asyncio.wait_for(writing, 10)

    events = await stored_events(nats_env.js, SUBJECT, at_least=2)
    assert [(e["data"]["contact"]["id"], e["data"]["changes"]) for e in events] == [
        (first, {"display_name": [customers[0].user_id, "Перша"]}),
        (second, {"display_name": [customers[1].user_id, "Друга"]}),
    ]
