"""Every kind of Meta item the simulator knows lands the way a manager would see it."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from crm.deals.events import display_name
from crm.models import Contact
from jggl_sandbox.meta_webhooks import Customer, every_variant


def _variants(platform: str, page_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [(name, kind, item) for name, kind, item in every_variant(platform, seed=7, page_id=page_id)]  # type: ignore[arg-type]


def _mid(item: dict[str, Any]) -> str:
    for key in ("message", "postback"):
        if key in item:
            return str(item[key]["mid"])
    raise AssertionError(f"no mid in {item}")


@pytest.mark.parametrize("platform", ["messenger", "instagram"])
async def test_every_variant_lands_as_the_manager_sees_it(harness, to_events, unique_page_id, platform) -> None:
    page = unique_page_id()
    variants = _variants(platform, page)
    events = to_events(platform, page, [item for _, _, item in variants])
    assert [e.data.kind for e in events] == [kind for _, kind, _ in variants]

    results = [await harness.service.handle(event) for event in events]

    by_name = {name: item for name, _, item in variants}
    applied = {name: r.applied for (name, _, _), r in zip(variants, results, strict=True)}
    assert not applied.get("optin", False)
    assert not applied["handover"]
    assert all(ok for name, ok in applied.items() if name not in ("optin", "handover"))

    # One customer, one conversation, one deal, whatever the first item was.
    assert await harness.count("contacts") == 1
    assert await harness.count("conversations") == 1
    (deal,) = await harness.deals()
    assert deal["stage"] == "new"
    assert deal["status"] == "open"
    (channel,) = await harness.rows("SELECT * FROM channels")
    assert channel["external_id"] == page
    assert channel["platform"] == platform
    assert channel["last_webhook_at"] is not None

    def message(name: str) -> Any:
        return harness.message(_mid(by_name[name]))

    text = await message("text")
    assert (text["direction"], text["kind"], text["text"]) == ("in", "text", by_name["text"]["message"]["text"])

    for kind in ("image", "video", "audio", "file"):
        row = await message(kind)
        assert row["kind"] == kind
        assert row["attachments"][0]["type"] == kind
        assert row["attachments"][0]["url"] == by_name[kind]["message"]["attachments"][0]["payload"]["url"]

    reel = await message("ig_reel")
    assert reel["kind"] == "ig_reel"
    assert reel["attachments"][0]["reel_video_id"]
    assert reel["attachments"][0]["url"].startswith("https://")

    quick = await message("quick_reply")
    assert quick["kind"] == "text"
    assert quick["quick_reply_payload"] == by_name["quick_reply"]["message"]["quick_reply"]["payload"]

    reply = await message("reply")
    assert reply["reply_to_mid"] == by_name["reply"]["message"]["reply_to"]["mid"]

    for name in ("postback", "postback_value"):
        item = by_name[name]
        body = item.get("postback") or item["value"]["postback"]
        row = await harness.message(body["mid"])
        assert (row["kind"], row["text"], row["postback_payload"]) == ("postback", body["title"], body["payload"])
        assert row["direction"] == "in"

    echo = await message("echo")
    assert echo["direction"] == "out"
    assert echo["author_label"] == "Meta inbox"
    assert echo["status"] == "sent"
    assert echo["text"] == by_name["echo"]["message"]["text"]
    assert echo["read_at"] is not None  # the read receipt came after it
    assert echo["response_seconds"] is not None  # an echo is a reply

    # The reaction then the unreact on the page's last message: nothing left to show.
    reacted = await harness.message(by_name["reaction"]["reaction"]["mid"])
    assert reacted["reactions"] == {}
    assert reacted["reaction_clock"]

    assert deal["first_response_seconds"] is not None
    assert deal["last_message_text"]
    events_out = [(e["subject"], json.loads(e["payload"])) for e in await harness.outbox_events()]
    assert [s for s, _ in events_out].count("crm.deal.created") == 1
    received = [p for s, p in events_out if s == "crm.message.received"]
    # Unsent messages were announced when they arrived, before the customer took them back.
    inbound_rows = [m for m in await harness.messages() if m["direction"] == "in"]
    assert sorted(p["data"]["mid"] for p in received) == sorted(m["mid"] for m in inbound_rows)
    assert all(p["data"]["mid"] != echo["mid"] for p in received)

    if platform == "messenger":
        first = await harness.message(by_name["get_started"]["postback"]["mid"])
        assert (first["kind"], first["text"], first["postback_payload"]) == ("postback", "Get Started", "GET_STARTED")
        first_received = received[0]["data"]
        assert first_received["is_first_message"] is True
        assert first_received["mid"] == first["mid"]

        assert (await message("location"))["attachments"][0]["lat"] is not None
        share = await message("fallback")
        assert share["kind"] == "share"
        assert share["attachments"][0]["url"] == by_name["fallback"]["message"]["attachments"][0]["payload"]["url"]
        assert (await message("fallback_empty"))["kind"] == "share"
        template = await message("template")
        assert template["kind"] == "template"
        assert template["attachments"][0]["elements"][0]["title"] == "Linen shirt"

        edited = await harness.message(by_name["edit"]["message_edit"]["mid"])
        assert edited["is_edited"] is True
        assert edited["edit_count"] == 1
        assert edited["text"] == by_name["edit"]["message_edit"]["text"]

        assert echo["delivered_at"] is not None
        (conversation,) = await harness.rows("SELECT * FROM conversations")
        assert conversation["read_watermark"] is not None
        assert conversation["delivered_watermark"] is not None

        # Get Started from an m.me link came first: that is the lead's source.
        assert deal["lead_source"] == "shortlink"
        assert deal["referral"]["ref"] == "spring_landing"
    else:
        for kind in ("share", "story_mention", "ephemeral", "unsupported"):
            assert (await message(kind))["kind"] == kind
        story = await message("story_reply")
        assert story["kind"] == "story_reply"
        assert story["reply_to_story"]["id"] == by_name["story_reply"]["message"]["reply_to"]["story"]["id"]
        icebreaker = await harness.message(by_name["icebreaker"]["postback"]["mid"])
        assert icebreaker["postback_payload"] == "ICEBREAKER_PRICES"
        for name in ("delete", "delete_string"):
            gone = await harness.message(by_name[name]["message"]["mid"])
            assert gone["is_deleted"] is True
            assert gone["text"] is None
        # The ad referral came before the link one: first touch wins.
        assert deal["lead_source"] == "ads"
        assert deal["referral"]["ad_id"]

    async with harness.sessions() as session:
        contact = (await session.execute(Contact.__table__.select())).one()  # type: ignore[attr-defined]
    assert contact.profile_status == "pending"
    assert display_name(Contact(**contact._mapping)) == contact.external_id


async def test_get_started_alone_opens_the_deal_and_the_customer_waits_for_a_reply(
    harness, to_events, unique_page_id
) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(3), page_id=page)
    (event,) = to_events("messenger", page, [customer.get_started()])

    await harness.service.handle(event)

    (deal,) = await harness.deals()
    (message,) = await harness.messages()
    assert message["kind"] == "postback"
    assert message["text"] == "Get Started"
    assert deal["awaiting_reply_since"] == message["sent_at"]
    assert deal["last_message_text"] == "Get Started"
    subjects = [e["subject"] for e in await harness.outbox_events()]
    assert subjects == ["crm.deal.created", "crm.message.received"]


async def test_a_referral_alone_opens_a_deal_with_its_lead_source(harness, to_events, unique_page_id) -> None:
    page = unique_page_id()
    customer = Customer.new("instagram", random.Random(4), page_id=page)
    (event,) = to_events("instagram", page, [customer.referral("ADS")])

    await harness.service.handle(event)

    (deal,) = await harness.deals()
    assert deal["lead_source"] == "ads"
    assert deal["referral"]["source"] == "ADS"
    assert deal["awaiting_reply_since"] is None
    assert await harness.count("messages") == 0
    created = [json.loads(e["payload"]) for e in await harness.outbox_events()]
    assert [e["type"] for e in created] == ["crm.deal.created"]
    assert created[0]["data"]["lead_source"] == "ads"


async def test_other_items_are_acknowledged_and_change_nothing(harness, to_events, unique_page_id) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(5), page_id=page)
    events = to_events("messenger", page, [customer.optin(), customer.pass_thread_control()])

    results = [await harness.service.handle(e) for e in events]

    assert [r.applied for r in results] == [False, False]
    assert await harness.count("contacts") == 0
    assert await harness.count("outbox") == 0


async def test_a_message_from_an_ad_click_sets_the_lead_source(harness, to_events, unique_page_id) -> None:
    page = unique_page_id()
    customer = Customer.new("messenger", random.Random(6), page_id=page)
    greeting = customer.text("Hi! I saw your ad")
    greeting["message"]["referral"] = {"source": "ADS", "type": "OPEN_THREAD", "ad_id": "6045246247433"}
    later_link = customer.referral("SHORTLINK")
    events = to_events("messenger", page, [greeting, later_link])

    for event in reversed(events):  # the later link click arrives first
        await harness.service.handle(event)

    (deal,) = await harness.deals()
    assert deal["lead_source"] == "ads"
    assert deal["referral"]["ad_id"] == "6045246247433"
    updated = [json.loads(e["payload"]) for e in await harness.outbox_events() if e["subject"] == "crm.deal.updated"]
    assert [u["data"]["changes"]["lead_source"] for u in updated] == [["shortlink", "ads"]]
