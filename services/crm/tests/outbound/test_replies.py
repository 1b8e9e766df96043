"""POST /api/deals/{id}/messages: who may reply, Meta's window, validation, idempotency."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from crm.outbound.window import NEEDS_HUMAN_AGENT, NEVER_WROTE, TOO_LATE

from .conftest import Crm


async def test_a_reply_inside_24_hours_goes_out_as_a_response(crm: Crm) -> None:
    manager = await crm.user()
    deal = await crm.deal(wrote_ago=timedelta(hours=3), assignee=manager)

    response = await crm.reply(manager, deal, "Yes, size M is in stock.")

    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["status"] == "queued"
    assert queued["direction"] == "out"
    assert queued["mid"] is None
    assert queued["messaging_type"] == "RESPONSE"
    assert queued["author_user_id"] == manager.id
    sent = await crm.settled(queued["id"])
    assert sent["status"] == "sent"
    (delivered,) = crm.fake.sent_to(await crm.page_of(deal))
    assert sent["mid"] == delivered["message_id"]
    assert delivered["recipient"] == {"id": await crm.psid_of(deal)}
    assert delivered["messaging_type"] == "RESPONSE"
    assert "tag" not in delivered
    assert delivered["message"] == {"text": "Yes, size M is in stock."}
    # Response tracking: the customer waited about three hours and is answered now.
    row = await crm.deal_row(deal)
    assert row["awaiting_reply_since"] is None
    assert 3 * 3600 - 5 <= row["first_response_seconds"] <= 3 * 3600 + 60
    assert sent["response_seconds"] == row["first_response_seconds"]
    (event,) = await crm.events("crm.message.sent", at_least=1)
    assert event["data"]["mid"] == sent["mid"]
    assert event["data"]["author_user_id"] == manager.id
    assert event["data"]["messaging_type"] == "RESPONSE"
    # The history shows it as the manager wrote it.
    history = await crm.client.get(f"/api/deals/{deal.id}/messages", headers=crm.headers(manager))
    assert [(m["direction"], m["status"], m["mid"]) for m in history.json()["items"]][-1] == (
        "out",
        "sent",
        sent["mid"],
    )


async def test_between_24_hours_and_7_days_the_human_agent_tag_is_used_when_enabled(crm: Crm) -> None:
    await crm.set_human_agent(True)
    manager = await crm.user()
    deal = await crm.deal(wrote_ago=timedelta(hours=30), assignee=manager)

    response = await crm.reply(manager, deal, "Sorry for the wait!")

    assert response.status_code == 202, response.text
    assert response.json()["messaging_type"] == "MESSAGE_TAG"
    assert response.json()["tag"] == "HUMAN_AGENT"
    assert (await crm.settled(response.json()["id"]))["status"] == "sent"
    (delivered,) = crm.fake.sent_to(await crm.page_of(deal))
    assert delivered["messaging_type"] == "MESSAGE_TAG"
    assert delivered["tag"] == "HUMAN_AGENT"


async def test_between_24_hours_and_7_days_without_the_tag_the_reply_is_refused(crm: Crm) -> None:
    manager = await crm.user()
    deal = await crm.deal(wrote_ago=timedelta(hours=30), assignee=manager)

    response = await crm.reply(manager, deal)

    assert response.status_code == 409
    assert response.json() == {"detail": NEEDS_HUMAN_AGENT}
    assert await crm.outgoing(deal) == []
    assert await crm.rows("SELECT * FROM outbox") == []
    assert crm.fake.send_attempts() == []


async def test_no_reply_after_7_days_nor_before_the_customer_ever_wrote(crm: Crm) -> None:
    await crm.set_human_agent(True)
    manager = await crm.user()
    stale = await crm.deal(wrote_ago=timedelta(days=8), assignee=manager)
    silent = await crm.deal(wrote_ago=None, assignee=manager)

    too_late = await crm.reply(manager, stale)
    never = await crm.reply(manager, silent)

    assert too_late.status_code == 409
    assert too_late.json() == {"detail": TOO_LATE}
    assert never.status_code == 409
    assert never.json() == {"detail": NEVER_WROTE}
    assert await crm.outgoing(stale) == []
    assert await crm.outgoing(silent) == []
    assert await crm.rows("SELECT * FROM outbox") == []


async def test_managers_reply_on_their_own_and_unassigned_deals_only(crm: Crm) -> None:
    me, colleague = await crm.user(), await crm.user()
    theirs = await crm.deal(assignee=colleague)
    unassigned = await crm.deal()

    assert (await crm.reply(me, theirs)).status_code == 404
    assert (await crm.reply(me, unassigned)).status_code == 202
    assert (
        await crm.client.post(
            "/api/deals/999999/messages", json={"text": "x", "idempotency_key": "k"}, headers=crm.headers(me)
        )
    ).status_code == 404
    assert await crm.outgoing(theirs) == []


INVALID_REPLIES: list[dict[str, object]] = [
    {"idempotency_key": "k"},
    {"text": "   ", "idempotency_key": "k"},
    {"text": "x" * 2001, "idempotency_key": "k"},
    {"text": "hi"},
    {"text": "hi", "idempotency_key": ""},
    {"attachments": [{"type": "image", "url": "ftp://files.example.com/a.png"}], "idempotency_key": "k"},
    {"attachments": [{"type": "image", "url": "javascript:alert(1)"}], "idempotency_key": "k"},
    {"attachments": [{"type": "sticker", "url": "https://example.com/a.png"}], "idempotency_key": "k"},
    {"text": "hi", "attachments": [{"type": "image", "url": "https://example.com/a.png"}], "idempotency_key": "k"},
    {
        "attachments": [{"type": "image", "url": f"https://example.com/{n}.png"} for n in range(2)],
        "idempotency_key": "k",
    },
    {"text": "hi\x00", "idempotency_key": "k"},
    {"text": "hi", "idempotency_key": "k", "messaging_type": "UPDATE"},
]


async def test_invalid_replies_are_422(crm: Crm) -> None:
    manager = await crm.user()
    deal = await crm.deal(assignee=manager)

    for body in INVALID_REPLIES:
        response = await crm.client.post(f"/api/deals/{deal.id}/messages", json=body, headers=crm.headers(manager))
        assert response.status_code == 422, (body, response.text)
    assert await crm.outgoing(deal) == []


async def test_2000_characters_and_an_attachment_alone_are_accepted(crm: Crm) -> None:
    manager = await crm.user()
    deal = await crm.deal(assignee=manager)

    long_text = await crm.reply(manager, deal, "я" * 2000)
    picture = await crm.reply(
        manager, deal, None, attachments=[{"type": "image", "url": "https://cdn.example.com/catalogue/m.jpg"}]
    )

    assert long_text.status_code == 202, long_text.text
    assert picture.status_code == 202, picture.text
    assert picture.json()["kind"] == "image"
    assert (await crm.settled(picture.json()["id"]))["status"] == "sent"
    assert (await crm.settled(long_text.json()["id"]))["status"] == "sent"
    sent = {s["message_id"]: s for s in crm.fake.sent_to(await crm.page_of(deal))}
    assert sent[(await crm.message(picture.json()["id"]))["mid"]]["message"] == {
        "attachment": {
            "type": "image",
            "payload": {"url": "https://cdn.example.com/catalogue/m.jpg", "is_reusable": True},
        }
    }


async def test_the_same_idempotency_key_twice_sends_once(crm: Crm) -> None:
    manager = await crm.user()
    deal = await crm.deal(assignee=manager)

    first = await crm.reply(manager, deal, "Once only", idempotency_key="click-1")
    await crm.settled(first.json()["id"])
    again = await crm.reply(manager, deal, "Once only", idempotency_key="click-1")

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "sent"
    assert len(await crm.outgoing(deal)) == 1
    await asyncio.sleep(0.5)  # give a wrongly queued second send the time to show up
    assert len(crm.fake.send_attempts(await crm.page_of(deal))) == 1


async def test_a_burst_of_concurrent_submits_with_one_key_sends_once(crm: Crm) -> None:
    manager = await crm.user()
    deal = await crm.deal(assignee=manager)

    responses = await asyncio.gather(
        *(crm.reply(manager, deal, "Double click", idempotency_key="dbl") for _ in range(6))
    )

    assert sorted(r.status_code for r in responses) == [200] * 5 + [202]
    assert len({r.json()["id"] for r in responses}) == 1
    await crm.settled(responses[0].json()["id"])
    await asyncio.sleep(0.5)
    assert len(await crm.outgoing(deal)) == 1
    assert len(crm.fake.send_attempts(await crm.page_of(deal))) == 1
    assert len(await crm.events("crm.outbound.send_requested", at_least=1)) == 1


async def test_a_key_reused_for_another_text_is_a_conflict(crm: Crm) -> None:
    manager = await crm.user()
    deal = await crm.deal(assignee=manager)

    assert (await crm.reply(manager, deal, "first", idempotency_key="same")).status_code == 202
    reused = await crm.reply(manager, deal, "second", idempotency_key="same")

    assert reused.status_code == 409
    assert len(await crm.outgoing(deal)) == 1


async def test_the_deal_stops_waiting_as_soon_as_the_reply_is_queued_and_waits_again_if_it_fails(crm: Crm) -> None:
    manager = await crm.user()
    deal = await crm.deal(assignee=manager, wrote_ago=timedelta(minutes=10))
    crm.fake.fail_sends(await crm.page_of(deal), code=551)
    waiting_since = (await crm.deal_row(deal))["awaiting_reply_since"]
    assert waiting_since is not None

    response = await crm.reply(manager, deal)
    failed = await crm.settled(response.json()["id"])

    assert failed["status"] == "failed"
    row = await crm.deal_row(deal)
    assert row["awaiting_reply_since"] == waiting_since
    assert row["first_response_seconds"] is None
