"""How Telegram updates reach the bot: by webhook (through ingest) or by long polling.

``TELEGRAM_MODE`` (live: ``telegram.mode``) chooses:

* ``webhook`` (default): Telegram posts updates to ingest (``{APP_URL}/webhooks/telegram``),
  which stores them on ``ingest.telegram.update``; the notifier's consumer feeds them to the
  bot. The notifier registers that webhook itself, with the secret token ingest checks,
  and checks ``getWebhookInfo`` every ``TELEGRAM_WEBHOOK_CHECK_SECONDS``, registering it
  again when the URL differs. Without a secret it registers nothing (ingest would refuse
  every update).
* ``polling``: the webhook is deleted and ``getUpdates`` is long-polled, each update fed
  through :func:`handle_update` like the webhook path (same ``handled_updates`` dedupe).
  Telegram answers 409 to a second poller, so only the replica holding a PostgreSQL
  session advisory lock (on a connection of its own) polls; the others retry the lock
  and take over when it is released (the holder stopped or its connection died).

A change of ``telegram.bot_token``, ``telegram.mode`` or ``telegram.webhook_secret`` in the
live settings stops the running mode and starts the new one with a new ``Bot`` (handed to
the notifications too, through ``on_bot``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import Update
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.live_settings import LiveSettings
from jggl_common.logs import get_logger
from notifier.config import NotifierSettings
from notifier.store import Store
from notifier.telegram import make_bot

__all__ = ["ALLOWED_UPDATES", "POLL_LOCK", "UpdateModes", "handle_update"]

log = get_logger(__name__)

ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
POLL_LOCK = "notifier.telegram-polling"
"""The advisory lock (hashed with the schema) the polling replica holds."""
_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


async def handle_update(store: Store, bot: Bot, dispatcher: Dispatcher, update: Update) -> None:
    """Feed one update to the bot once: an update handled already is skipped, and it is
    remembered only after its answers went out."""
    if await store.was_handled(update.update_id):
        return
    try:
        await dispatcher.feed_update(bot, update)
    except (TelegramForbiddenError, TelegramBadRequest) as exc:
        # The answer cannot be delivered (blocked, chat gone): retrying will not help.
        log.warning("answer to a Telegram update refused", update_id=update.update_id, error=str(exc))
    await store.mark_handled(update.update_id)


class UpdateModes:
    """Runs the update mode the settings ask for, and restarts it when they change."""

    def __init__(
        self,
        settings: NotifierSettings,
        engine: AsyncEngine,
        store: Store,
        dispatcher: Dispatcher,
        on_bot: Callable[[Bot | None], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_bot = on_bot
        """Called with each new bot (the notifications send with it too)."""
        self.engine = engine
        self.store = store
        self.dispatcher = dispatcher
        self.bot: Bot | None = None
        self.mode: str | None = None
        self.polling = False
        """Whether this replica holds the polling lock and polls."""
        self._live: LiveSettings | None = None
        self._running: tuple[str, str, str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._stale: list[Bot] = []

    # ---------------------------------------------------------------- what is wanted

    def _value(self, key: str, default: str) -> str:
        live = self._live.get(key) if self._live is not None else None
        return (live if live is not None else default).strip()

    def wanted(self) -> tuple[str, str, str]:
        """(mode, bot token, webhook secret) as the live settings or the environment say."""
        s = self.settings
        mode = self._value("telegram.mode", s.telegram_mode).lower()
        if mode not in ("webhook", "polling"):
            log.error("unusable telegram.mode ignored", mode=mode)
            mode = s.telegram_mode
        return mode, self.token(), self._value("telegram.webhook_secret", s.telegram_webhook_secret)

    def token(self) -> str:
        """The bot token the live settings or the environment give (empty: no Telegram)."""
        return self._value("telegram.bot_token", self.settings.telegram_bot_token)

    def current_bot(self) -> Bot | None:
        """The bot for the current token (the webhook path answers with it too)."""
        return self.bot

    # ---------------------------------------------------------------- life cycle

    async def start(self, live: LiveSettings | None = None) -> None:
        """Start the wanted mode, and follow ``live`` (when given) for changes."""
        self._live = live
        await self._apply()
        if live is not None:
            live.on_change(self._on_change)
        self._supervisor = asyncio.create_task(self._supervise(), name="telegram-update-modes")

    def _on_change(self, key: str, value: str | None) -> None:
        if key in ("telegram.mode", "telegram.bot_token", "telegram.webhook_secret"):
            self._changed.set()

    async def _supervise(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                await self._apply()
            except Exception as exc:  # never let the supervisor die
                log.error("telegram update mode not applied", error=f"{type(exc).__name__}: {exc}")

    async def _apply(self) -> None:
        wanted = self.wanted()
        if wanted == self._running:
            return
        await self._stop_mode()
        mode, token, secret = wanted
        self._running = wanted
        self.mode = mode
        if self.bot is None or self.bot.token != token:
            if self.bot is not None:
                self._stale.append(self.bot)
            try:
                self.bot = make_bot(self.settings.model_copy(update={"telegram_bot_token": token}))
            except Exception as exc:  # aiogram refuses a malformed token
                log.error("unusable Telegram bot token ignored", error=type(exc).__name__)
                self.bot = None
            if self.on_bot is not None:
                self.on_bot(self.bot)
        # Old bots stay open until stop: notifications in flight may still be sending with them.
        if self.bot is None:
            log.warning("no Telegram bot token: no updates are received", mode=mode)
            return
        log.info("telegram update mode", mode=mode)
        run = self._webhook(self.bot, secret) if mode == "webhook" else self._poll(self.bot)
        self._task = asyncio.create_task(run, name=f"telegram-{mode}")

    async def _stop_mode(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _close_stale(self) -> None:
        for bot in self._stale:
            with suppress(Exception):
                await bot.session.close()
        self._stale.clear()

    async def stop(self) -> None:
        """Stop the supervisor and the running mode, close the bot."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._stop_mode()
        if self.bot is not None:
            self._stale.append(self.bot)
            self.bot = None
        await self._close_stale()
        self._running = None

    # ---------------------------------------------------------------- webhook

    async def _webhook(self, bot: Bot, secret: str) -> None:
        if not secret:
            log.error(
                "TELEGRAM_WEBHOOK_SECRET is not set: the Telegram webhook is not registered "
                "(ingest refuses Telegram webhooks without it)"
            )
            return
        url = f"{self.settings.app_url.rstrip('/')}/webhooks/telegram"
        failures = 0
        registered = False  # set once at start (the secret may be new), then whenever the URL differs
        while True:
            try:
                info = await bot.get_webhook_info()
                if not registered or info.url != url:
                    await bot.set_webhook(url=url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)
                    log.info("telegram webhook registered", url=url, was=info.url or None)
                    registered = True
                failures = 0
                await asyncio.sleep(self.settings.telegram_webhook_check_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = _BACKOFF[min(failures, len(_BACKOFF) - 1)]
                failures += 1
                log.warning("telegram webhook check failed", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                await asyncio.sleep(min(delay, self.settings.telegram_webhook_check_seconds))

    # ---------------------------------------------------------------- polling

    async def _poll(self, bot: Bot) -> None:
        failures = 0
        while True:
            try:
                await self._poll_holding_lock(bot)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the lock's connection lost: wait, then try for the lock again
                delay = _BACKOFF[min(failures, len(_BACKOFF) - 1)]
                failures += 1
                log.warning("telegram polling stopped", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                await asyncio.sleep(delay)

    async def _poll_holding_lock(self, bot: Bot) -> None:
        s = self.settings
        key: dict[str, Any] = {"name": POLL_LOCK}
        lock = text("SELECT pg_try_advisory_lock(hashtext(current_schema()), hashtext(:name))")
        async with self.engine.connect() as conn:
            try:
                waited = False
                while not (await conn.execute(lock, key)).scalar():
                    await conn.rollback()
                    if not waited:
                        log.info("another notifier replica polls Telegram; waiting to take over")
                        waited = True
                    await asyncio.sleep(s.telegram_poll_lock_retry_seconds)
                await conn.commit()  # the session lock stays; only the transaction ends
                self.polling = True

                async def alive() -> None:
                    await conn.execute(text("SELECT 1"))
                    await conn.commit()

                await self._poll_loop(bot, alive)
            finally:
                self.polling = False
                # Close the connection rather than return it to the pool holding the lock.
                with suppress(Exception):
                    await conn.invalidate()

    async def _poll_loop(self, bot: Bot, alive: Callable[[], Awaitable[None]]) -> None:
        timeout = self.settings.telegram_poll_timeout_seconds
        offset: int | None = None
        failures = 0
        deleted = False
        while True:
            await alive()  # the lock's connection lost: stop polling (another replica takes over)
            try:
                if not deleted:
                    await bot.delete_webhook()
                    deleted = True
                    log.info("telegram long polling started")
                updates = await bot.get_updates(
                    offset=offset, timeout=timeout, allowed_updates=ALLOWED_UPDATES, request_timeout=timeout + 10
                )
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = _BACKOFF[min(failures, len(_BACKOFF) - 1)]
                failures += 1
                log.warning("telegram getUpdates failed", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                await asyncio.sleep(delay)
                continue
            for update in updates:
                try:
                    await handle_update(self.store, bot, self.dispatcher, update)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Not confirmed: asked for again with the next getUpdates.
                    log.error(
                        "telegram update failed", update_id=update.update_id, error=f"{type(exc).__name__}: {exc}"
                    )
                    await asyncio.sleep(_BACKOFF[0])
                    break
                offset = update.update_id + 1
