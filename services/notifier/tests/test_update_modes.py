"""Both update modes against the Telegram fake: the webhook registered (and kept registered)
with the secret ingest checks, long polling feeding the same handler, and the mode switched
at run time through the live settings."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.live_settings import LiveSettings
from jggl_sandbox.telegram_fake import TelegramFakeServer

from .conftest import (
    APP_KEY,
    APP_URL,
    TOKEN,
    Bus,
    StartNotifier,
    eventually,
    link_requested,
    next_id,
    rows,
    update_received,
)
from .test_linking import answers, code_known

SECRET = "s3cret-Token_1"
HOOK = f"{APP_URL}/webhooks/telegram"
FAST_WEBHOOK: dict[str, Any] = {"telegram_webhook_secret": SECRET, "telegram_webhook_check_seconds": 0.2}
FAST_POLLING: dict[str, Any] = {
    "telegram_mode": "polling",
    "telegram_poll_timeout_seconds": 1,
    "telegram_poll_lock_retry_seconds": 0.2,
}


def calls(telegram: TelegramFakeServer, method: str) -> list[Any]:
    return [call for call in telegram.fake.calls() if call.method.lower() == method.lower()]


async def webhook_url(telegram: TelegramFakeServer, url: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        hook = telegram.fake.webhook
        return hook if hook and hook["url"] == url else None

    return dict(await eventually(check))


async def test_webhook_mode_registers_the_webhook_with_the_secret_and_keeps_it(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer
) -> None:
    service = await start_notifier(**FAST_WEBHOOK)

    hook = await webhook_url(telegram, HOOK)
    assert hook["secret_token"] == SECRET
    assert set(hook["allowed_updates"]) == {"message", "callback_query", "my_chat_member"}
    info = telegram.fake.call(TOKEN, "getWebhookInfo", {})
    assert info["url"] == HOOK

    # Someone points the bot elsewhere: the next check registers ours again.
    telegram.fake.call(TOKEN, "setWebhook", {"url": "https://elsewhere.example.com/hook"})
    assert telegram.fake.webhook["url"] == "https://elsewhere.example.com/hook"  # type: ignore[index]
    hook = await webhook_url(telegram, HOOK)
    assert hook["secret_token"] == SECRET

    # A new secret in the live settings: registered again with it.
    live = LiveSettings(bus.nc, APP_KEY, service.settings.settings_bucket)
    await live.put("telegram.webhook_secret", "new-Secret_2", secret=True)
    await eventually(lambda: _true((telegram.fake.webhook or {}).get("secret_token") == "new-Secret_2"))


async def test_webhook_mode_without_a_secret_registers_nothing(
    start_notifier: StartNotifier, telegram: TelegramFakeServer
) -> None:
    await start_notifier(telegram_webhook_check_seconds=0.2)
    await asyncio.sleep(0.6)
    assert telegram.fake.webhook is None
    assert calls(telegram, "setWebhook") == []


async def test_polling_links_the_chat_without_ingest_and_handles_each_update_once(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    telegram.fake.call(TOKEN, "setWebhook", {"url": "https://elsewhere.example.com/hook"})
    first = await start_notifier(**FAST_POLLING)
    second = await start_notifier(**FAST_POLLING)  # a replica: waits for the lock
    user, chat = next_id(), next_id()
    await bus.publish(link_requested(user, "POLL01"))
    await code_known(engine, "POLL01")

    update = telegram.fake.user_sends(chat, "/start POLL01", first_name="Mia")

    (answer,) = await answers(telegram, chat)
    assert answer.startswith("✅ Linked")
    (link,) = await rows(engine, "SELECT user_id, chat_id FROM links")
    assert link == {"user_id": user, "chat_id": chat}
    assert telegram.fake.webhook is None  # deleted to poll
    assert calls(telegram, "getUpdates")
    assert [first.updates.polling, second.updates.polling].count(True) == 1

    # The same update arriving through ingest as well is not answered again, nor is the
    # next one answered twice by the two replicas.
    await bus.publish(update_received(update))
    telegram.fake.user_sends(chat, "/help", first_name="Mia")
    await answers(telegram, chat, 2)
    await asyncio.sleep(1.0)
    assert len(telegram.fake.sent(chat)) == 2


async def test_the_polling_replica_stopping_lets_another_take_over(
    start_notifier: StartNotifier, telegram: TelegramFakeServer
) -> None:
    first = await start_notifier(**FAST_POLLING)
    second = await start_notifier(**FAST_POLLING)
    await eventually(lambda: _polling(first, second))
    poller, waiter = (first, second) if first.updates.polling else (second, first)
    await poller.updates.stop()
    await eventually(lambda: _true(waiter.updates.polling))

    chat = next_id()
    telegram.fake.user_sends(chat, "/help", first_name="Mia")
    assert len(await answers(telegram, chat)) == 1


async def _polling(*services: Any) -> bool:
    return any(service.updates.polling for service in services)


async def _true(value: bool) -> bool:
    return value


async def test_switching_from_webhook_to_polling_at_run_time(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer, engine: AsyncEngine
) -> None:
    service = await start_notifier(**FAST_WEBHOOK, telegram_poll_timeout_seconds=1)
    await webhook_url(telegram, HOOK)
    assert calls(telegram, "getUpdates") == []

    live = LiveSettings(bus.nc, APP_KEY, service.settings.settings_bucket)
    await live.put("telegram.mode", "polling", secret=False)

    await eventually(lambda: _true(telegram.fake.webhook is None and bool(calls(telegram, "getUpdates"))))
    assert service.updates.mode == "polling"
    user, chat = next_id(), next_id()
    await bus.publish(link_requested(user, "LIVE01"))
    await code_known(engine, "LIVE01")
    telegram.fake.user_sends(chat, "/start LIVE01", first_name="Mia")
    (answer,) = await answers(telegram, chat)
    assert answer.startswith("✅ Linked")

    # And back: the webhook is registered again.
    await live.put("telegram.mode", "webhook", secret=False)
    await webhook_url(telegram, HOOK)


async def test_a_new_bot_token_takes_effect_without_a_restart(
    start_notifier: StartNotifier, bus: Bus, telegram: TelegramFakeServer
) -> None:
    service = await start_notifier(**FAST_POLLING)
    await eventually(lambda: _true(service.updates.polling))
    live = LiveSettings(bus.nc, APP_KEY, service.settings.settings_bucket)
    other = "654321:another-token"

    await live.put("telegram.bot_token", other, secret=True)

    await eventually(lambda: _true(service.updates.bot is not None and service.updates.bot.token == other))
    assert service.new_leads.bot is service.updates.bot  # notifications send with it too
    # The fake knows only the first token: the new bot's calls are refused (401).
    await eventually(lambda: _true(any(call.status == 401 for call in telegram.fake.calls())))

    await live.put("telegram.bot_token", TOKEN, secret=True)
    await eventually(lambda: _true(service.updates.bot is not None and service.updates.bot.token == TOKEN))
    chat = next_id()
    telegram.fake.user_sends(chat, "/help", first_name="Mia")
    assert len(await answers(telegram, chat)) == 1
