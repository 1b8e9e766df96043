"""One event per webhook item, on the subject of its object and kind, carrying the item verbatim."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from jggl_common.contracts import MetaItemReceived


def _base(sender: str, recipient: str, ts: int) -> dict[str, Any]:
    return {"sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": ts}


async def test_a_batch_becomes_one_event_per_item_with_its_subject_and_payload(ingest, meta, stream) -> None:
    page_a, page_b, page_c, customer = meta.new_id(), meta.new_id(), meta.new_id(), meta.new_id()
    ts = 1767225600000 + secrets.randbelow(10**9)
    mid, page_mid = meta.new_mid(), meta.new_mid()
    batch = [
        (page_a, False, "message", {**_base(customer, page_a, ts), "message": {"mid": mid, "text": "Is it in stock?"}}),
        (
            page_a,
            False,
            "echo",
            {
                **_base(page_a, customer, ts + 1),
                "message": {"mid": page_mid, "text": "Yes!", "is_echo": True, "app_id": 734512098765432},
            },
        ),
        (
            page_b,
            False,
            "postback",
            {
                **_base(customer, page_b, ts + 2),
                "postback": {"title": "Book", "payload": "BOOK", "mid": meta.new_mid()},
            },
        ),
        (
            page_b,
            False,
            "edit",
            {
                **_base(customer, page_b, ts + 3),
                "message_edit": {"mid": mid, "text": "Is it in stock now?", "num_edit": 1},
            },
        ),
        (page_c, True, "read", {**_base(customer, page_c, ts + 4), "read": {"watermark": ts}}),
        (
            page_c,
            True,
            "delivery",
            {**_base(customer, page_c, ts + 5), "delivery": {"mids": [page_mid], "watermark": ts + 1}},
        ),
    ]
    payload = meta.webhook(
        "page",
        [
            meta.entry(page_a, [batch[0][3], batch[1][3]]),
            meta.entry(page_b, [batch[2][3], batch[3][3]]),
            meta.entry(page_c, [batch[4][3], batch[5][3]], standby=True),
        ],
    )
    correlation = "corr-" + secrets.token_hex(8)

    response = await ingest.post_meta(payload, headers={"X-Correlation-ID": correlation})

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "events": 6}
    stored = [m for page in (page_a, page_b, page_c) for m in await stream.meta_events(page)]
    assert len(stored) == 6
    for entry_id, standby, kind, item in batch:
        (event,) = [m for m in stored if m.data["item"] == item]
        assert event.subject == f"ingest.meta.page.{kind}"
        assert event.event["type"] == "ingest.meta.item"
        assert event.event["version"] == 1
        assert event.event["producer"] == "ingest"
        assert event.data["object"] == "page"
        assert event.data["kind"] == kind
        assert event.data["entry_id"] == entry_id
        assert event.data["standby"] is standby
        assert event.data["timestamp"] == item["timestamp"]
        assert event.data["sender_id"] == item["sender"]["id"]
        assert event.headers["Nats-Msg-Id"] == event.event["id"]
        assert event.headers["X-Correlation-ID"] == correlation
        assert event.event["correlation_id"] == correlation
        # What consumers read: the contract accepts the event as stored, the item verbatim.
        contract = MetaItemReceived.model_validate(event.event)
        assert contract.data.item == item
        assert contract.occurred_at.tzinfo is not None
    assert len({m.event["id"] for m in stored}) == 6
    assert {m.data["mid"] for m in stored if m.data["kind"] in ("message", "edit")} == {mid}


async def test_an_instagram_webhook_goes_to_instagram_subjects(ingest, meta, stream) -> None:
    account, customer = meta.new_id(), meta.new_id()
    ts = 1767225600000 + secrets.randbelow(10**9)
    items = [
        ("message", {**_base(customer, account, ts), "message": {"mid": meta.new_mid(), "text": "привіт 👋"}}),
        (
            "reaction",
            {
                **_base(customer, account, ts + 1),
                "reaction": {"mid": meta.new_mid(), "action": "react", "reaction": "love", "emoji": "❤️"},
            },
        ),
        (
            "referral",
            {**_base(customer, account, ts + 2), "referral": {"ref": "spring", "source": "ADS", "type": "OPEN_THREAD"}},
        ),
        ("other", {**_base(customer, account, ts + 3), "optin": {"ref": "SITE_PRODUCT_PAGE"}}),
    ]
    payload = meta.webhook("instagram", [meta.entry(account, [item for _, item in items])])

    response = await ingest.post_meta(payload)

    assert response.status_code == 200
    stored = await stream.meta_events(account)
    assert sorted((m.subject, m.data["kind"]) for m in stored) == sorted(
        (f"ingest.meta.instagram.{kind}", kind) for kind, _ in items
    )
    for kind, item in items:
        (event,) = [m for m in stored if m.data["kind"] == kind]
        assert event.data["item"] == item
        assert event.data["object"] == "instagram"
        assert event.data["standby"] is False


@pytest.mark.parametrize("platform", ["messenger", "instagram"])
async def test_every_kind_a_platform_sends_is_stored_under_its_kind(ingest, stream, platform) -> None:
    from jggl_sandbox.meta_webhooks import every_kind, object_for, signed, webhook

    page = str(10**15 + secrets.randbits(52))
    items = every_kind(platform, seed=secrets.randbits(48), page_id=page)
    half = len(items) // 2
    body = webhook(platform, page, [item for _, item in items[:half]], 1767225600000)
    body["entry"].append(
        {"id": page, "time": 1767225600001, "standby": [item for _, item in items[half:]]},
    )
    request = signed(body, ingest.kit.app_secret)

    response = await ingest.client.post("/webhooks/meta", content=request.body, headers=request.headers)

    assert response.status_code == 200
    assert response.json()["events"] == len(items)
    stored = await stream.meta_events(page)
    assert len(stored) == len(items)
    object_ = object_for(platform)
    for position, (kind, item) in enumerate(items):
        expected = item["value"] if "field" in item else item  # the field/value postback is unwrapped
        (event,) = [m for m in stored if m.data["item"] == expected]
        assert event.data["kind"] == kind
        assert event.subject == f"ingest.meta.{object_}.{kind}"
        assert event.data["standby"] is (position >= half)


async def test_the_field_value_postback_shape_is_a_postback(ingest, meta, stream) -> None:
    page, customer = meta.new_id(), meta.new_id()
    value = {
        "sender": {"id": customer},
        "recipient": {"id": page},
        "timestamp": "1767225600123",
        "postback": {"mid": meta.new_mid(), "title": "Get Started", "payload": "GET_STARTED"},
    }
    payload = meta.webhook("page", [meta.entry(page, [{"field": "messaging_postbacks", "value": value}])])

    response = await ingest.post_meta(payload)

    assert response.status_code == 200
    (event,) = await stream.meta_events(page)
    assert event.subject == "ingest.meta.page.postback"
    assert event.data["item"] == value
    assert event.data["sender_id"] == customer
    assert event.data["timestamp"] == 1767225600123


async def test_numbers_meta_sends_as_odd_strings_do_not_cost_the_item(ingest, meta, stream) -> None:
    page = meta.new_id()
    item = meta.text(page, "hi")
    item["timestamp"] = "²"
    payload = meta.webhook("page", [{"id": page, "time": "9" * 5000, "messaging": [item]}])

    response = await ingest.post_meta(payload)

    assert response.status_code == 200
    (event,) = await stream.meta_events(page)
    assert event.data["item"] == item
    assert event.data["timestamp"] is None
    assert event.data["entry_time"] is None
