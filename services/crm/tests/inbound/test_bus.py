"""The consumer on a real NATS JetStream server: every kind, two replicas racing, the DLQ,
and the events it publishes. Each test runs its own nats-server (see ``nats_env``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from crm.graph import GraphClient
from crm.profiles import ProfileEnricher
from crm.worker import register_inbound
from jggl_common.bus import RetryPolicy, ServiceBus
from jggl_common.contracts import DeadLetter, MetaItemData, MetaItemReceived, stable_event_id
from jggl_common.outbox import Outbox
from jggl_common.streams import INGEST
from jggl_sandbox.meta_webhooks import Customer, Platform, every_kind

FAST_RETRIES = RetryPolicy(max_deliveries=2, backoff=(0.1,))


@contextlib.asynccontextmanager
async def running_consumers(
    harness, nats_env, graph_fake, settings, *, replicas: int = 1
) -> AsyncIterator[tuple[str, str]]:
    """``replicas`` crm processes sharing one durable consumer; yields (durable, service name)."""
    durable = f"crm-inbound-test-{nats_env.tag}"
    service_name = f"crmtest{nats_env.tag}"
    graph = GraphClient(graph_fake.url, settings.meta_graph_version, timeout=5.0)
    buses, enrichers = [], []
    for _ in range(replicas):
        bus = ServiceBus(nats_env.url, service_name)
        outbox = Outbox(harness.sessions, nats_env.publisher)
        enricher = ProfileEnricher(harness.sessions, outbox, settings, graph)
        register_inbound(
            bus,
            harness.sessions,
            outbox,
            settings,
            graph,
            enricher=enricher,
            durable=durable,
            policy=FAST_RETRIES,
            max_workers=8,
        )
        await bus.broker.start()
        buses.append(bus)
        enrichers.append(enricher)
    try:
        yield durable, service_name
    finally:
        for bus in buses:
            await bus.broker.stop()
        for enricher in enrichers:
            await enricher.aclose()
        await graph.aclose()


async def drained(nats_env, durable: str, timeout: float = 30.0) -> None:
    """Wait until the consumer has nothing left to deliver and nothing unacknowledged."""
    deadline = asyncio.get_running_loop().time() + timeout
    quiet = 0
    while asyncio.get_running_loop().time() < deadline:
        info = await nats_env.js.consumer_info(INGEST.name, durable)
        quiet = quiet + 1 if info.num_pending == 0 and info.num_ack_pending == 0 else 0
        if quiet >= 3:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"consumer {durable} did not drain in {timeout}s")


async def read_stream(nats_env, subject: str, since: datetime, idle: float = 1.0, timeout: float = 15.0) -> list[Any]:
    """Messages on ``subject`` stored since ``since``, read until the stream goes quiet."""
    sub = await nats_env.js.subscribe(
        subject,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since),
    )
    found = []
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while asyncio.get_running_loop().time() < deadline:
            try:
                found.append(await sub.next_msg(timeout=idle))
            except nats.errors.TimeoutError:
                break
    finally:
        await sub.unsubscribe()
    return found


def republished(event: MetaItemReceived) -> MetaItemReceived:
    """The same item under a new event id, as if ingest's deduplication had missed it."""
    return event.model_copy(update={"id": secrets.token_hex(16)})


async def test_every_kind_through_the_bus_ends_like_direct_handling(
    harness, nats_env, graph_fake, settings, to_events, unique_page_id
) -> None:
    pages: dict[Platform, str] = {"messenger": unique_page_id(), "instagram": unique_page_id()}
    seed = random.randrange(10**9)
    events = [
        event
        for platform, page in pages.items()
        for event in to_events(platform, page, [item for _, item in every_kind(platform, seed=seed, page_id=page)])
    ]
    assert {e.data.kind for e in events} >= {"message", "echo", "postback", "reaction", "read", "delivery", "edit"}
    await harness.feed(events)
    expected = await harness.dump(pages.values())
    await harness.reset()

    async with running_consumers(harness, nats_env, graph_fake, settings) as (durable, _):
        await nats_env.publish(events)
        await drained(nats_env, durable)

    assert await harness.dump(pages.values()) == expected
    assert len(expected["messages"]) > 30


async def test_two_replicas_given_the_same_messages_twice_store_and_announce_each_once(
    harness, nats_env, graph_fake, settings, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    since = datetime.now(UTC) - timedelta(seconds=1)
    rng = random.Random(secrets.randbits(64))
    customers = [Customer.new("messenger", rng, page_id=page) for _ in range(5)]
    firsts = [to_events("messenger", page, [c.text()])[0] for c in customers]
    seconds = [to_events("messenger", page, [c.text()])[0] for c in customers]
    duplicated = [copy for event in firsts + seconds for copy in (event, republished(event), republished(event))]

    async with running_consumers(harness, nats_env, graph_fake, settings, replicas=2) as (durable, _):
        await nats_env.publish(duplicated)
        await drained(nats_env, durable)

    psids = {c.user_id for c in customers}
    dump = await harness.dump([page])
    assert {c["external_id"] for c in dump["contacts"]} == psids
    assert len(dump["deals"]) == 5
    assert len(dump["messages"]) == 10

    announced: dict[str, list[str]] = {"crm.deal.created": [], "crm.message.received": []}
    for subject, seen in announced.items():
        for msg in await read_stream(nats_env, subject, since):
            data = json.loads(msg.data)["data"]
            contact = data["contact"]
            if contact["external_id"] in psids:
                seen.append(data.get("mid") or contact["external_id"])
    assert sorted(announced["crm.deal.created"]) == sorted(psids)
    assert sorted(announced["crm.message.received"]) == sorted(e.data.mid for e in firsts + seconds)


async def test_an_item_that_always_fails_goes_to_the_dlq_and_the_rest_flows(
    harness, nats_env, graph_fake, settings, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    since = datetime.now(UTC) - timedelta(seconds=1)
    customer = Customer.new("messenger", random.Random(secrets.randbits(64)), page_id=page)
    good = to_events("messenger", page, [customer.text(), customer.text()])
    item = customer.text()
    item["sender"] = {"id": "not-a-psid"}
    poison = MetaItemReceived(
        id=stable_event_id(f"poison:{page}"),
        producer="ingest",
        data=MetaItemData(
            object="page",
            kind="message",
            entry_id=page,
            sender_id="not-a-psid",
            recipient_id=page,
            timestamp=item["timestamp"],
            mid=item["message"]["mid"],
            dedupe_key=f"poison:{page}",
            item=item,
        ),
    )

    async with running_consumers(harness, nats_env, graph_fake, settings) as (durable, service_name):
        await nats_env.publish([good[0], poison, good[1]])
        letters = []
        for msg in await read_stream(nats_env, f"dlq.{service_name}.>", since, idle=3.0):
            letter = DeadLetter.model_validate_json(msg.data)
            if page in letter.data.payload:
                letters.append(letter)
        await drained(nats_env, durable)

    (letter,) = letters
    assert letter.data.original_subject == "ingest.meta.page.message"
    # A malformed item can never succeed: it is not retried.
    assert letter.data.deliveries == 1
    assert letter.data.error == "InvalidMetaItem: sender.id 'not-a-psid' is not a Meta id"
    assert json.loads(letter.data.payload)["id"] == poison.id
    dump = await harness.dump([page])
    assert sorted(m["mid"] for m in dump["messages"]) == sorted(e.data.mid for e in good)
