"""Profile enrichment through the real Graph client against the sandbox's Graph fake."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from crm.deals.events import display_name
from crm.graph import GraphClient, GraphError, Profile
from crm.inbound import InboundService
from crm.models import Contact
from crm.profiles import ProfileEnricher
from crm.profiles.enricher import _Fetched
from jggl_common.crypto import SecretBox
from jggl_sandbox.meta_webhooks import Customer


@pytest.fixture
def enricher(harness, settings, graph):
    return ProfileEnricher(harness.sessions, harness.outbox, settings, graph, concurrency=2, base_backoff_seconds=0.05)


@pytest.fixture
def service(harness, enricher):
    return InboundService(
        harness.sessions, harness.outbox, on_new_contact=enricher.schedule_new, profile_lease=enricher.lease
    )


async def _contact(harness, external_id: str) -> Contact:
    (row,) = await harness.rows("SELECT * FROM contacts WHERE external_id = :e", e=external_id)
    return Contact(**row)


async def test_a_new_contact_gets_name_and_picture_without_holding_up_the_deal(
    harness, service, enricher, graph_fake, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(41)
    olena = Customer.new("messenger", rng, page_id=page)
    graph_fake.fake.add_profile(olena.user_id, first_name="Олена", last_name="Коваль", profile_pic="https://cdn/o.jpg")
    insta = Customer.new("instagram", rng, page_id=page)
    graph_fake.fake.add_profile(insta.user_id, name="", username="shop.lover", profile_pic="https://cdn/i.jpg")
    events = to_events("messenger", page, [olena.text()]) + to_events("instagram", page, [insta.text()])

    for event in events:
        await service.handle(event)
    created = [json.loads(e["payload"]) for e in await harness.outbox_events() if e["subject"] == "crm.deal.created"]
    # The deal was announced before the profile arrived: it names the customer by id.
    assert created[0]["data"]["contact"]["display_name"] == olena.user_id
    await enricher.wait_idle(timeout=10)

    fetched = await _contact(harness, olena.user_id)
    assert (fetched.name, fetched.avatar_url) == ("Олена Коваль", "https://cdn/o.jpg")
    assert fetched.profile_status == "fetched"
    assert fetched.profile_fetched_at is not None
    assert display_name(fetched) == "Олена Коваль"
    instagram = await _contact(harness, insta.user_id)
    assert (instagram.username, instagram.avatar_url) == ("shop.lover", "https://cdn/i.jpg")
    assert display_name(instagram) == "@shop.lover"
    # The search trigger followed the name.
    found = await harness.rows("SELECT id FROM deals WHERE search_vector @@ to_tsquery('simple', 'олена')")
    assert len(found) == 1
    calls = graph_fake.fake.calls(olena.user_id)
    assert len(calls) == 1
    assert calls[0].query["fields"] == "first_name,last_name,profile_pic"
    assert calls[0].token == "default-page-token"
    assert graph_fake.fake.calls(insta.user_id)[0].query["fields"] == "name,username,profile_pic"

    # Once per contact: more messages and a sweep ask Meta nothing more.
    await service.handle(to_events("messenger", page, [olena.text()])[0])
    assert await enricher.sweep_once() == 0
    await enricher.wait_idle(timeout=10)
    assert len(graph_fake.fake.calls(olena.user_id)) == 1


async def test_a_graph_error_leaves_the_deal_and_the_id_as_the_name(
    harness, service, enricher, graph_fake, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(42), page_id=page)
    graph_fake.fake.fail_next(1, code=100, subcode=33, match=customer.user_id)

    await service.handle(to_events("messenger", page, [customer.text()])[0])
    await enricher.wait_idle(timeout=10)

    contact = await _contact(harness, customer.user_id)
    assert contact.profile_status == "failed"
    assert "code=100" in (contact.profile_error or "")
    assert display_name(contact) == customer.user_id
    assert await harness.count("deals") == 1
    assert await enricher.sweep_once() == 0  # failed for good: not retried


async def test_throttling_is_retried_later_and_then_succeeds(
    harness, service, enricher, graph_fake, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    customer = Customer.new("instagram", random.Random(43), page_id=page)
    graph_fake.fake.add_profile(customer.user_id, name="Marta", username="marta")
    graph_fake.fake.fail_next(1, code=613, match=customer.user_id)

    await service.handle(to_events("instagram", page, [customer.text()])[0])
    await enricher.wait_idle(timeout=10)
    contact = await _contact(harness, customer.user_id)
    assert (contact.profile_status, contact.profile_attempts) == ("pending", 1)
    assert contact.profile_retry_at is not None

    for _ in range(50):  # the backoff is 50 ms in this test
        if await enricher.sweep_once():
            break
        await asyncio.sleep(0.05)
    await enricher.wait_idle(timeout=10)

    contact = await _contact(harness, customer.user_id)
    assert (contact.profile_status, contact.name, contact.profile_attempts) == ("fetched", "Marta", 2)


async def test_the_channel_token_is_used_before_the_default_one(
    harness, service, enricher, graph_fake, settings, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(44), page_id=page)
    graph_fake.fake.tokens = {"channel-own-token"}
    sealed = SecretBox(settings.app_key).seal("channel-own-token")
    async with harness.sessions() as session:
        await session.execute(
            text(
                "INSERT INTO channels (platform, external_id, access_token_sealed, needs_reauth, is_active, created_at)"
                " VALUES ('messenger', :p, :t, false, true, now())"
            ),
            {"p": page, "t": sealed},
        )
        await session.commit()

    await service.handle(to_events("messenger", page, [customer.text()])[0])
    await enricher.wait_idle(timeout=10)

    assert (await _contact(harness, customer.user_id)).profile_status == "fetched"
    assert graph_fake.fake.calls(customer.user_id)[0].token == "channel-own-token"


async def test_the_sweep_fetches_contacts_nobody_scheduled(
    harness, enricher, graph_fake, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(45), page_id=page)
    await harness.service.handle(to_events("messenger", page, [customer.text()])[0])  # no enricher attached

    assert await enricher.sweep_once() == 1
    await enricher.wait_idle(timeout=10)

    assert (await _contact(harness, customer.user_id)).profile_status == "fetched"


async def test_many_new_customers_at_once_each_get_their_own_profile(
    harness, settings, graph, graph_fake, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(47)
    customers = [Customer.new("messenger", rng, page_id=page) for _ in range(40)]
    for number, customer in enumerate(customers):
        graph_fake.fake.add_profile(customer.user_id, first_name=f"Покупець{number}", last_name="Тест")
    enricher = ProfileEnricher(harness.sessions, harness.outbox, settings, graph, concurrency=8)
    service = InboundService(
        harness.sessions, harness.outbox, on_new_contact=enricher.schedule_new, profile_lease=enricher.lease
    )

    await asyncio.gather(*(service.handle(e) for e in to_events("messenger", page, [c.text() for c in customers])))
    await enricher.wait_idle(timeout=20)

    rows = await harness.rows("SELECT external_id, name, profile_status FROM contacts WHERE name IS NOT NULL")
    assert {row["external_id"]: row["name"] for row in rows} == {
        customer.user_id: f"Покупець{number} Тест" for number, customer in enumerate(customers)
    }
    assert {row["profile_status"] for row in rows} == {"fetched"}


async def test_a_backlog_is_swept_up_to_the_room_in_the_queue(
    harness, settings, graph, graph_fake, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(48)
    items = [Customer.new("messenger", rng, page_id=page).text() for _ in range(30)]
    await asyncio.gather(*(harness.service.handle(e) for e in to_events("messenger", page, items)))  # no enricher
    enricher = ProfileEnricher(harness.sessions, harness.outbox, settings, graph, concurrency=4, max_queued=25)

    assert await enricher.sweep_once() == 25  # what the queue holds, not a fixed page of the backlog
    assert await enricher.sweep_once() == 0  # full
    await enricher.wait_idle(timeout=20)
    assert await enricher.sweep_once() == 5
    await enricher.wait_idle(timeout=20)

    assert await harness.rows("SELECT id FROM contacts WHERE profile_status <> 'fetched'") == []


async def test_the_periodic_sweep_comes_back_at_once_while_more_is_due_than_the_queue_took(
    harness, settings, graph, graph_fake, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(49)
    items = [Customer.new("messenger", rng, page_id=page).text() for _ in range(30)]
    await asyncio.gather(*(harness.service.handle(e) for e in to_events("messenger", page, items)))  # no enricher
    enricher = ProfileEnricher(harness.sessions, harness.outbox, settings, graph, concurrency=4, max_queued=25)

    # With an hour between quiet sweeps, the 5 the first sweep had no room for come only
    # if the sweep sees that it filled the queue and looks again within busy_interval.
    sweeper = asyncio.create_task(enricher.run(interval=3600, busy_interval=0.05))
    try:
        for _ in range(200):
            if not await harness.rows("SELECT id FROM contacts WHERE profile_status <> 'fetched'"):
                break
            await asyncio.sleep(0.1)
    finally:
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
        await enricher.aclose()

    assert await harness.rows("SELECT id FROM contacts WHERE profile_status <> 'fetched'") == []


async def test_while_the_messages_path_is_backlogged_profiles_are_fetched_one_at_a_time(
    harness, settings, graph, graph_fake, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    rng = random.Random(49)
    graph_fake.fake.profile_delay = 0.3
    enricher = ProfileEnricher(harness.sessions, harness.outbox, settings, graph, concurrency=4)
    backlogged = True
    enricher.yield_to(lambda: backlogged)
    service = InboundService(
        harness.sessions, harness.outbox, on_new_contact=enricher.schedule_new, profile_lease=enricher.lease
    )

    async def arrivals(count: int) -> list[float]:
        customers = [Customer.new("messenger", rng, page_id=page) for _ in range(count)]
        await asyncio.gather(*(service.handle(e) for e in to_events("messenger", page, [c.text() for c in customers])))
        await enricher.wait_idle(timeout=20)
        return sorted(call.at for c in customers for call in graph_fake.fake.calls(c.user_id))

    one_by_one = await arrivals(4)
    assert len(one_by_one) == 4
    assert all(later - earlier >= 0.25 for earlier, later in itertools.pairwise(one_by_one))

    backlogged = False
    together = await arrivals(4)
    assert together[-1] - together[0] < 0.25  # all four in flight at once


async def test_writing_profiles_never_waits_for_one_contact_while_holding_another(
    harness, settings, graph, to_events, unique_page_id
) -> None:
    # Waiting for a row while holding others is how two transactions deadlock; an inbound
    # transaction may hold a contact the profile write also touches.
    page = unique_page_id()
    rng = random.Random(50)
    customers = [Customer.new("messenger", rng, page_id=page) for _ in range(2)]
    for event in to_events("messenger", page, [c.text() for c in customers]):
        await harness.service.handle(event)
    first, second = sorted(row["id"] for row in await harness.rows("SELECT id FROM contacts"))
    enricher = ProfileEnricher(harness.sessions, harness.outbox, settings, graph)

    async with harness.sessions() as holder:
        await holder.execute(text("SELECT 1 FROM contacts WHERE id = :id FOR UPDATE"), {"id": second})
        writing = asyncio.create_task(
            enricher._store_profiles([_Fetched(second, Profile(name="Друга")), _Fetched(first, Profile(name="Перша"))])
        )
        await asyncio.sleep(0.5)
        names = {r["id"]: r["name"] for r in await harness.rows("SELECT id, name FROM contacts")}
        # The free contact is written (and committed) while the other one is still held.
        assert names[first] == "Перша"
        assert names[second] is None
        assert not writing.done()
        await holder.commit()
    await asyncio.wait_for(writing, 10)

    names = {r["id"]: r["name"] for r in await harness.rows("SELECT id, name FROM contacts")}
    assert names == {first: "Перша", second: "Друга"}


async def test_a_claimed_first_fetch_that_never_ran_goes_to_the_sweep_when_its_lease_ends(
    harness, enricher, graph_fake, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(46), page_id=page)
    lost: list[Any] = []  # a hook that never fetches: the process stopped, or its queue was full
    service = InboundService(
        harness.sessions, harness.outbox, on_new_contact=lost.append, profile_lease=timedelta(seconds=1)
    )
    await service.handle(to_events("messenger", page, [customer.text()])[0])
    assert [c.external_id for c in lost] == [customer.user_id]

    # Claimed for the hook: the sweep leaves it alone while the lease lasts...
    assert await enricher.sweep_once() == 0
    await asyncio.sleep(1.1)
    # ...and takes it afterwards.
    assert await enricher.sweep_once() == 1
    await enricher.wait_idle(timeout=10)

    contact = await _contact(harness, customer.user_id)
    assert contact.profile_status == "fetched"
    assert contact.profile_attempts == 2


@pytest.mark.parametrize(
    ("code", "throttling", "auth", "transient"),
    [
        (4, True, False, True),
        (17, True, False, True),
        (32, True, False, True),
        (613, True, False, True),
        (80006, True, False, True),
        (190, False, True, False),
        (100, False, False, False),
        (2, False, False, True),
    ],
)
async def test_graph_errors_are_read_from_metas_error_object(
    graph_fake, graph, code, throttling, auth, transient
) -> None:
    graph_fake.fake.fail_next(1, code=code)

    with pytest.raises(GraphError) as caught:
        await graph.get_profile("messenger", "123", "token")

    error = caught.value
    assert (error.code, error.is_throttling, error.is_auth, error.is_transient) == (code, throttling, auth, transient)
    assert error.fbtrace_id
    assert error.http_status == 400
    if code == 190:
        assert error.subcode == 463
        assert error.type == "OAuthException"


async def test_the_fake_answers_like_graph_for_unknown_ids_and_missing_tokens(graph_fake, graph) -> None:
    graph_fake.fake.unknown_profiles = "error"
    with pytest.raises(GraphError) as unknown:
        await graph.get_profile("instagram", "999", "token")
    assert (unknown.value.code, unknown.value.subcode) == (100, 33)

    async with httpx.AsyncClient(base_url=graph_fake.url) as client:
        missing = await client.get("/v25.0/999", params={"fields": "name"})
        sent = await client.post(
            "/v25.0/me/messages",
            params={"access_token": "t"},
            json={"recipient": {"id": "42"}, "messaging_type": "RESPONSE", "message": {"text": "hi"}},
        )
    assert missing.json()["error"]["code"] == 104
    assert sent.json()["recipient_id"] == "42"
    assert sent.json()["message_id"].startswith("m_")
    assert graph_fake.fake.sent[0]["message"] == {"text": "hi"}


async def test_a_graph_outage_without_an_error_object_is_transient() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="<html>Bad Gateway</html>"))
    client = GraphClient("https://graph.example", "25.0", transport=transport)

    with pytest.raises(GraphError) as caught:
        await client.get_profile("messenger", "1", "t")

    assert (caught.value.code, caught.value.http_status, caught.value.is_transient) == (None, 502, True)
    assert client.version == "v25.0"
    await client.aclose()
