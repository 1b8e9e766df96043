"""The sender against the Graph fake: throttling, refusals, an expired token, the window
checked again at send time."""

from __future__ import annotations

import itertools
import secrets
from datetime import timedelta

from sqlalchemy import text

from crm.conversation.repository import load_message
from crm.graph import regain_seconds
from crm.outbound import events as outbound_events
from crm.outbound.repository import insert_queued
from crm.outbound.sender import retry_delay
from crm.outbound.window import NEEDS_HUMAN_AGENT
from jggl_common.contracts import SendRequested
from jggl_common.db import session_scope
from jggl_sandbox.graph_fake import ScriptedError

from .conftest import Crm


async def test_throttling_is_retried_with_growing_delays_until_it_goes_through(crm: Crm) -> None:
    manager = await crm.user()
    deal = await crm.deal(assignee=manager)
    page = await crm.page_of(deal)
    crm.fake.fail_sends(page, 2, code=613)

    response = await crm.reply(manager, deal, "Patience pays")
    sent = await crm.settled(response.json()["id"])

    assert sent["status"] == "sent"
    assert sent["send_attempts"] == 3
    attempts = crm.fake.send_attempts(page)
    assert len(attempts) == 3
    assert len(crm.fake.sent_to(page)) == 1
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    # Base 0.25 s, doubling: at least 0.25 s then 0.5 s (jitter and delivery only add).
    assert gaps[0] >= 0.24
    assert gaps[1] >= 0.49
    assert sent["error_code"] is None
    assert len(await crm.events("crm.message.sent", at_least=1)) == 1
    assert await crm.events("crm.message.failed") == []


async def test_throttling_without_end_fails_the_reply_after_the_last_attempt(crm: Crm) -> None:
    manager = await crm.user()
    deal = await crm.deal(assignee=manager)
    page = await crm.page_of(deal)
    crm.fake.fail_sends(page, 10, code=80006)

    response = await crm.reply(manager, deal)
    failed = await crm.settled(response.json()["id"], timeout=30)

    assert failed["status"] == "failed"
    assert failed["error_code"] == 80006
    assert len(crm.fake.send_attempts(page)) == crm.settings.send_max_attempts
    (event,) = await crm.events("crm.message.failed", at_least=1)
    assert event["data"]["reason"] == "throttled"
    assert event["data"]["attempts"] == crm.settings.send_max_attempts


async def test_an_invalid_token_fails_the_reply_and_flags_the_channel_for_the_admin(crm: Crm) -> None:
    manager = await crm.user()
    deal = await crm.deal(assignee=manager)
    page = await crm.page_of(deal)
    crm.fake.fail_sends(page, 2, code=190)

    first = await crm.reply(manager, deal, "one")
    failed = await crm.settled(first.json()["id"])
    second = await crm.reply(manager, deal, "two")
    await crm.settled(second.json()["id"])

    assert failed["status"] == "failed"
    assert failed["error_code"] == 190
    assert failed["error_subcode"] == 463
    assert "Error validating access token" in failed["error_message"]
    assert len(crm.fake.send_attempts(page)) == 2  # one per reply: no retry of a dead token
    (channel,) = await crm.rows("SELECT needs_reauth FROM channels WHERE id = :c", c=deal.channel_id)
    assert channel["needs_reauth"] is True
    # Admins are told once per incident, the author once per reply.
    (alert,) = await crm.events("crm.channel.needs_reauth", at_least=1)
    assert alert["data"]["channel_id"] == deal.channel_id
    assert alert["data"]["external_id"] == page
    assert alert["data"]["error_code"] == 190
    failures = await crm.events("crm.message.failed", at_least=2)
    assert [f["data"]["reason"] for f in failures] == ["token_invalid", "token_invalid"]
    assert failures[0]["data"]["author_user_id"] == manager.id
    # A later successful send proves the token good again.
    third = await crm.reply(manager, deal, "three")
    assert (await crm.settled(third.json()["id"]))["status"] == "sent"
    (channel,) = await crm.rows("SELECT needs_reauth FROM channels WHERE id = :c", c=deal.channel_id)
    assert channel["needs_reauth"] is False


async def test_refusals_fail_at_once_with_metas_code_and_text(crm: Crm) -> None:
    manager = await crm.user()
    for code, subcode in [(551, 1545041), (10, 2018278), (100, None)]:
        deal = await crm.deal(assignee=manager)
        page = await crm.page_of(deal)
        crm.fake.fail_sends(page, 3, code=code)

        response = await crm.reply(manager, deal)
        failed = await crm.settled(response.json()["id"])

        assert failed["status"] == "failed"
        assert failed["error_code"] == code
        assert failed["error_subcode"] == subcode
        assert failed["error_message"] == ScriptedError(code=code).body()["error"]["message"]
        assert len(crm.fake.send_attempts(page)) == 1
        history = await crm.client.get(f"/api/deals/{deal.id}/messages", headers=crm.headers(manager))
        last = history.json()["items"][-1]
        assert (last["status"], last["error_code"]) == ("failed", code)
    events = await crm.events("crm.message.failed", at_least=3)
    assert [(e["data"]["reason"], e["data"]["error_code"]) for e in events] == [
        ("meta_error", 551),
        ("meta_error", 10),
        ("meta_error", 100),
    ]
    assert await crm.events("crm.channel.needs_reauth") == []


async def _queue_directly(crm: Crm, deal_id: int, conversation_id: int, messaging_type: str) -> SendRequested:
    """A reply accepted earlier (as if it waited in the queue), and its send request."""
    async with session_scope(crm.sessions) as session:
        message_id = await insert_queued(
            session,
            conversation_id=conversation_id,
            deal_id=deal_id,
            kind="text",
            text="Queued long ago",
            attachments=[],
            idempotency_key=secrets.token_hex(4),
            messaging_type=messaging_type,
        )
        assert message_id is not None
        message = await load_message(session, message_id)
        assert message is not None
        await outbound_events.stage_send_requested(session, message, None)
    return SendRequested(
        producer="test", data={"message_id": message_id, "deal_id": deal_id, "conversation_id": conversation_id}
    )


async def test_the_window_is_checked_again_when_the_reply_is_sent(crm: Crm) -> None:
    deal = await crm.deal(wrote_ago=timedelta(hours=25))
    request = await _queue_directly(crm, deal.id, deal.conversation_id, "RESPONSE")  # type: ignore[arg-type]

    assert await crm.outbound.sender.handle(request) == "failed"

    failed = await crm.message(request.data.message_id)
    assert failed["status"] == "failed"
    assert failed["error_message"] == NEEDS_HUMAN_AGENT
    assert crm.fake.send_attempts() == []
    (event,) = await crm.events("crm.message.failed", at_least=1)
    assert event["data"]["reason"] == "window_closed"


async def test_a_reply_queued_as_response_goes_out_tagged_once_24_hours_have_passed(crm: Crm) -> None:
    await crm.set_human_agent(True)
    deal = await crm.deal(wrote_ago=timedelta(hours=25))
    request = await _queue_directly(crm, deal.id, deal.conversation_id, "RESPONSE")  # type: ignore[arg-type]

    assert await crm.outbound.sender.handle(request) == "sent"

    (delivered,) = crm.fake.sent_to(await crm.page_of(deal))
    assert (delivered["messaging_type"], delivered["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    sent = await crm.message(request.data.message_id)
    assert (sent["messaging_type"], sent["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    # A second delivery of the same request sends nothing.
    assert await crm.outbound.sender.handle(request) == "skipped"
    assert len(crm.fake.send_attempts()) == 1


async def test_a_channel_token_of_its_own_is_decrypted_and_used(crm: Crm) -> None:
    from jggl_common.crypto import SecretBox

    deal = await crm.deal()
    sealed = SecretBox(crm.settings.app_key).seal("own-page-token")
    async with session_scope(crm.sessions) as session:
        await session.execute(
            text("UPDATE channels SET access_token_sealed = :t WHERE id = :c"), {"t": sealed, "c": deal.channel_id}
        )
    request = await _queue_directly(crm, deal.id, deal.conversation_id, "RESPONSE")  # type: ignore[arg-type]

    assert await crm.outbound.sender.handle(request) == "sent"

    (call,) = crm.fake.send_attempts()
    assert call.token == "own-page-token"


def test_metas_usage_headers_set_the_retry_delay() -> None:
    error = ScriptedError(code=613, regain_minutes=3)
    headers = {name.lower(): value for name, value in error.headers("123").items()}

    assert regain_seconds(headers) == 180.0
    assert regain_seconds({"x-app-usage": '{"call_count": 100}'}) is None
    assert regain_seconds({"x-business-use-case-usage": "not json", "retry-after": "7"}) == 7.0
    assert 180.0 <= retry_delay(1, 180.0, base=2, cap=900) <= 198.0
    assert retry_delay(1, None, base=2, cap=900) < retry_delay(3, None, base=2, cap=900)
    assert retry_delay(20, None, base=2, cap=900) == 900
    assert retry_delay(1, 7200.0, base=2, cap=900) == 900
