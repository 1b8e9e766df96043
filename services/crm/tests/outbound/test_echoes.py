"""Echoes: our own replies come back from Meta and must not be stored twice, whichever
arrives first; replies typed in Meta's own apps are recorded and count as responses."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import timedelta

import httpx

from jggl_sandbox.meta_webhooks import Customer, signed, webhook

from .conftest import APP_SECRET, META_INBOX_APP_ID, Crm, eventually


async def _echo_answered(crm: Crm, count: int = 1) -> None:
    async def done() -> bool:
        return len(crm.fake.echoes) >= count

    await eventually(done, 10, "echo posted")
    assert [e["status"] for e in crm.fake.echoes] == [200] * len(crm.fake.echoes)


async def test_an_echo_after_the_answer_is_recognised_by_its_mid(crm: Crm) -> None:
    crm.fake.echo_mode = "after"
    crm.fake.echo_delay = 0.3  # well after the sender stored Meta's id
    manager = await crm.user()
    deal = await crm.deal(assignee=manager)

    response = await crm.reply(manager, deal, "Echo me")
    sent = await crm.settled(response.json()["id"])
    await _echo_answered(crm)

    (row,) = await crm.outgoing(deal)
    assert row["id"] == sent["id"]
    assert row["status"] == "sent"
    assert row["mid"] == crm.fake.sent_to(await crm.page_of(deal))[0]["message_id"]
    assert row["author_user_id"] == manager.id
    assert row["author_label"] is None
    assert len(crm.receiver.received) == 1
    assert len(await crm.events("crm.message.sent", at_least=1)) == 1


async def test_an_echo_before_the_answer_marks_the_in_flight_reply_sent(crm: Crm) -> None:
    crm.fake.echo_mode = "before"
    manager = await crm.user()
    deal = await crm.deal(assignee=manager)

    response = await crm.reply(manager, deal, "Race me")
    await crm.settled(response.json()["id"])
    await _echo_answered(crm)

    (row,) = await crm.outgoing(deal)
    (delivered,) = crm.fake.sent_to(await crm.page_of(deal))
    assert row["status"] == "sent"
    assert row["mid"] == delivered["message_id"]
    assert row["author_user_id"] == manager.id
    # Matched by the echo (which carries our app id), not by the answer.
    assert row["app_id"] == crm.settings.meta_app_id
    echo_ms = crm.fake.echoes[0]["body"]["entry"][0]["messaging"][0]["timestamp"]
    assert int(row["sent_at"].timestamp() * 1000) == echo_ms
    (event,) = await crm.events("crm.message.sent", at_least=1)
    assert event["data"]["message_id"] == row["id"]
    assert (await crm.deal_row(deal))["awaiting_reply_since"] is None


async def test_two_identical_replies_racing_their_echoes_stay_two_messages(crm: Crm) -> None:
    crm.fake.echo_mode = "before"
    manager = await crm.user()
    deal = await crm.deal(assignee=manager)

    first, second = await asyncio.gather(crm.reply(manager, deal, "ok"), crm.reply(manager, deal, "ok"))
    await crm.settled(first.json()["id"])
    await crm.settled(second.json()["id"])

    rows = await crm.outgoing(deal)
    sent = crm.fake.sent_to(await crm.page_of(deal))
    assert len(rows) == 2
    assert sorted(r["mid"] for r in rows) == sorted(s["message_id"] for s in sent)
    assert {r["status"] for r in rows} == {"sent"}


async def test_an_attachment_echo_is_matched_by_its_type(crm: Crm) -> None:
    crm.fake.echo_mode = "before"
    manager = await crm.user()
    deal = await crm.deal(assignee=manager)

    response = await crm.reply(
        manager, deal, None, attachments=[{"type": "image", "url": "https://cdn.example.com/p.jpg"}]
    )
    await crm.settled(response.json()["id"])

    (row,) = await crm.outgoing(deal)
    assert row["status"] == "sent"
    assert row["app_id"] == crm.settings.meta_app_id


async def test_a_reply_typed_in_metas_inbox_is_recorded_and_counts_as_the_response(crm: Crm) -> None:
    deal = await crm.deal(wrote_ago=timedelta(minutes=20))
    page, psid = await crm.page_of(deal), await crm.psid_of(deal)
    customer = Customer("messenger", psid, page, random.Random(5), app_id=META_INBOX_APP_ID)
    item = customer.echo("Hi! I answered from the Page inbox.", timestamp_ms=int(time.time() * 1000))
    request = signed(webhook("messenger", page, [item], item["timestamp"]), APP_SECRET)

    async with httpx.AsyncClient() as client:
        answer = await client.post(crm.receiver.url, content=request.body, headers=request.headers)

    assert answer.status_code == 200
    (row,) = await crm.outgoing(deal)
    assert row["author_label"] == "Meta inbox"
    assert row["author_user_id"] is None
    assert row["status"] == "sent"
    assert 20 * 60 - 5 <= row["response_seconds"] <= 20 * 60 + 60
    tracked = await crm.deal_row(deal)
    assert tracked["awaiting_reply_since"] is None
    assert tracked["first_response_seconds"] == row["response_seconds"]
    (event,) = await crm.events("crm.message.sent", at_least=1)
    assert event["data"]["author_label"] == "Meta inbox"
    assert event["data"]["messaging_type"] is None
