"""Channel health alerts against the Telegram fake: a problem found and a recovery reach
every linked admin once (the event published twice, two notifiers), no manager, with
crm's and Meta's words escaped; an admin can switch them off."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.contracts import ChannelHealthChanged, ChannelHealthChangedData, ChannelHealthProblem
from jggl_sandbox.telegram_fake import TelegramFakeServer
from notifier.channel_alerts import render_channel_health

from .conftest import Bus, StartNotifier, next_id, rows
from .test_event_notifications import linked, settled

NOT_SUBSCRIBED = ChannelHealthProblem(
    code="not_subscribed",
    message="No app receives this page's webhooks (subscribed_apps is empty): new messages will not arrive.",
)
EXPIRING = ChannelHealthProblem(
    code="token_expiring", message="The page access token expires on 2026-12-09 10:00 UTC (in 3 days) <soon>."
)


def health_changed(
    problems: list[ChannelHealthProblem], previous: list[ChannelHealthProblem], *, name: str = "Shop & Co"
) -> ChannelHealthChanged:
    channel = next_id()
    return ChannelHealthChanged(
        producer="crm",
        data=ChannelHealthChangedData(
            channel_id=channel,
            platform="messenger",
            external_id=str(channel),
            channel_name=name,
            status="problem" if problems else "ok",
            problems=problems,
            previous_problems=previous,
            recovered=not problems,
            checked_at=datetime.now(UTC),
        ),
    )


async def test_a_problem_and_its_recovery_reach_every_linked_admin_once(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    await start_notifier()
    await start_notifier()
    admins = [(await linked(engine, telegram, role="admin"))[1] for _ in range(2)]
    _, manager = await linked(engine, telegram)

    problem = health_changed([NOT_SUBSCRIBED, EXPIRING], [EXPIRING])
    await bus.publish(problem)
    await bus.publish(problem)
    assert await settled(engine, problem.id, 2) == dict.fromkeys(admins, "sent")
    for chat in admins:
        (message,) = telegram.fake.sent(chat)
        assert message.plain_text.startswith("⚠️ Channel problem\nShop & Co · Messenger\n")
        assert "• Webhooks not subscribed (new): No app receives this page's webhooks" in message.plain_text
        assert "• Access token expiring: The page access token expires on 2026-12-09 10:00 UTC" in message.plain_text
        assert "(in 3 days) <soon>." in message.plain_text  # Meta's words as they were, escaped on the wire
        assert "Fix it under Channels in the CRM" in message.plain_text

    recovery = health_changed([], [NOT_SUBSCRIBED])
    await bus.publish(recovery)
    assert await settled(engine, recovery.id, 2) == dict.fromkeys(admins, "sent")
    for chat in admins:
        _, healthy = telegram.fake.sent(chat)
        assert healthy.plain_text == (
            "✅ Channel healthy again\nShop & Co · Messenger\nResolved: Webhooks not subscribed."
        )
    assert telegram.fake.sent(manager) == []
    kinds = await rows(engine, "SELECT DISTINCT kind FROM notifications WHERE event_id = ANY($1)", [problem.id])
    assert kinds == [{"kind": "channel_health"}]


async def test_an_admin_who_switched_channel_health_off_is_not_alerted(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    notifier = await start_notifier()
    quiet_user, quiet = await linked(engine, telegram, role="admin")
    _, loud = await linked(engine, telegram, role="admin")
    switched = await notifier.store.toggle_kind(quiet_user, "channel_health")  # what /notify's button does
    assert "channel_health" in switched.muted_kinds
    event = health_changed([NOT_SUBSCRIBED], [])
    await bus.publish(event)
    assert await settled(engine, event.id, 2) == {quiet: "skipped", loud: "sent"}
    assert telegram.fake.sent(quiet) == []


def test_names_and_meta_s_words_are_escaped() -> None:
    text = render_channel_health(
        health_changed(
            [ChannelHealthProblem(code="token_invalid", message="Error <b>validating</b> & co"), EXPIRING],
            [NOT_SUBSCRIBED, EXPIRING],
            name="<i>Shop</i> & Co",
        ).data
    )
    assert "<b>&lt;i&gt;Shop&lt;/i&gt; &amp; Co</b> · Messenger" in text
    assert "• <b>Access token refused</b> (new): Error &lt;b&gt;validating&lt;/b&gt; &amp; co" in text
    assert "• <b>Access token expiring</b>: " in text
    assert "Resolved: Webhooks not subscribed." in text
