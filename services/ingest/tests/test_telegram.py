"""POST /webhooks/telegram: updates for the notifier bot, checked by the secret token."""

from __future__ import annotations

import secrets
from typing import Any

import pytest


def _update(update_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 17,
            "date": 1767225600,
            "chat": {"id": 424242, "type": "private"},
            "from": {"id": 424242, "is_bot": False, "first_name": "Олена"},
            "text": "/start link-abc",
        },
    }


def _new_update_id() -> int:
    return secrets.randbits(50)


async def test_an_update_with_the_right_secret_is_stored_as_one_event(ingest, stream) -> None:
    update = _update(_new_update_id())

    response = await ingest.post_telegram(update)

    assert response.status_code == 200
    (event,) = await stream.telegram_updates(update["update_id"])
    assert event.subject == "ingest.telegram.update"
    assert event.event["type"] == "ingest.telegram.update"
    assert event.data == {"update_id": update["update_id"], "update": update}
    assert event.headers["Nats-Msg-Id"] == event.event["id"]


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", "ingest-tests-telegram-secret-and-more"])
async def test_a_wrong_or_missing_secret_is_refused_and_nothing_is_stored(ingest, stream, secret) -> None:
    update = _update(_new_update_id())

    response = await ingest.post_telegram(update, secret=secret)

    assert response.status_code == 403
    assert await stream.telegram_updates(update["update_id"]) == []


async def test_without_a_configured_secret_every_update_is_refused(start_ingest, stream) -> None:
    update = _update(_new_update_id())

    async with start_ingest(telegram_webhook_secret="") as ingest:
        response = await ingest.post_telegram(update, secret="")

    assert response.status_code == 403
    assert await stream.telegram_updates(update["update_id"]) == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[1]", id="array"),
        pytest.param(b'{"message":{"text":"hi"}}', id="no-update-id"),
        pytest.param(b'{"update_id":"twelve"}', id="update-id-not-a-number"),
        pytest.param(b'{"update_id":1.5}', id="update-id-fraction"),
        pytest.param(b'{"update_id":1,"x":' + b"[" * 800 + b"]" * 800 + b"}", id="deeply-nested"),
    ],
)
async def test_a_body_that_is_not_an_update_gets_400(ingest, body) -> None:
    response = await ingest.post_telegram(body)

    assert response.status_code == 400
    assert response.json()["detail"]


async def test_the_same_update_twice_is_stored_once(ingest, stream) -> None:
    update = _update(_new_update_id())

    first = await ingest.post_telegram(update)
    second = await ingest.post_telegram(update)

    assert (first.status_code, second.status_code) == (200, 200)
    assert len(await stream.telegram_updates(update["update_id"])) == 1
