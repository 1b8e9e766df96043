"""Notifications from crm's events, each sent at most once per (event, chat).

For every recipient the ``notifications`` row is claimed before anything is sent (its
unique key is the event id and the chat), then the message is sent and the outcome
recorded. A redelivered event, the same event published twice or a second notifier
replica finds the row and sends nothing; a send that failed for a passing reason is
marked retryable and the handler raises, so the bus delivers the event again and only
those chats are tried again. A chat that blocked the bot, or a request Telegram refuses,
is recorded failed and not retried.
"""

from __future__ import annotations

import asyncio
import html
from datetime import timedelta

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramUnauthorizedError,
)
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from prometheus_client import Counter

from jggl_common.contracts import DealCreated, DealSnapshot, utcnow
from jggl_common.logs import get_logger
from notifier.store import Link, Store

__all__ = ["NOTIFICATIONS", "NewLeadNotifier", "NotificationFailed", "render_new_lead"]

log = get_logger(__name__)

NOTIFICATIONS = Counter(
    "jggl_notifier_notifications_total", "Notifications recorded, by kind and status", ["kind", "status"]
)
_PERMANENT = (TelegramForbiddenError, TelegramBadRequest, TelegramNotFound, TelegramUnauthorizedError)
_PLATFORMS = {"messenger": "Messenger", "instagram": "Instagram"}
SKIP_REASON = "no Telegram bot token configured"


class NotificationFailed(RuntimeError):
    """Some chats could not be notified for a passing reason; the event is to be redelivered."""


def render_new_lead(deal: DealSnapshot, app_url: str) -> tuple[str, InlineKeyboardMarkup]:
    """The text (Telegram HTML, customer data escaped) and the keyboard of a new lead."""
    name = html.escape(deal.contact.display_name)
    platform = html.escape(_PLATFORMS.get(deal.platform, deal.platform))
    stage = html.escape(deal.stage)
    text = f"🆕 <b>New lead</b>\n<b>{name}</b> · {platform}\nStage: {stage}"
    url = f"{app_url.rstrip('/')}/deals/{deal.id}"
    markup = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Open in CRM", url=url)]])
    return text, markup


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class NewLeadNotifier:
    """``crm.deal.created`` → a message to the assignee's chat, or to every linked chat
    while the deal is unassigned."""

    kind = "new_lead"

    def __init__(
        self,
        store: Store,
        bot: Bot | None,
        app_url: str,
        *,
        stale_after: timedelta = timedelta(minutes=5),
        parallel: int = 8,
    ) -> None:
        self.store = store
        self.bot = bot
        self.app_url = app_url
        self.stale_after = stale_after
        self._parallel = asyncio.Semaphore(parallel)

    async def handle(self, event: DealCreated) -> None:
        """Notify every recipient once; raise :class:`NotificationFailed` if some send
        failed for a passing reason (after the others were done)."""
        recipients = await self.store.recipients(event.data.assignee_id)
        if not recipients:
            return
        text, markup = render_new_lead(event.data, self.app_url)
        results = await asyncio.gather(*(self._notify(event.id, link, text, markup) for link in recipients))
        failed = [link.chat_id for link, ok in zip(recipients, results, strict=True) if not ok]
        if failed:
            raise NotificationFailed(f"{self.kind} {event.id}: will retry chats {failed}")

    async def _notify(self, event_id: str, link: Link, text: str, markup: InlineKeyboardMarkup) -> bool:
        """Send to one chat; False when it should be tried again later."""
        if self.bot is None:
            if await self.store.record_skipped(event_id, link, self.kind, SKIP_REASON):
                NOTIFICATIONS.labels(self.kind, "skipped").inc()
            return True
        claim = await self.store.claim(event_id, link, self.kind, stale_before=utcnow() - self.stale_after)
        if claim is None:
            # Sent, skipped or given up before: done. Being sent elsewhere right now (an
            # overlapping delivery): look again later, in case that attempt dies midway.
            return await self.store.status(event_id, link.chat_id) != "pending"
        async with self._parallel:
            try:
                message = await self.bot.send_message(link.chat_id, text, reply_markup=markup)
            except _PERMANENT as exc:
                await self.store.record_failed(claim.id, _describe(exc), retryable=False)
                NOTIFICATIONS.labels(self.kind, "failed").inc()
                log.warning(
                    "notification refused by Telegram", event_id=event_id, chat_id=link.chat_id, error=_describe(exc)
                )
                return True
            except Exception as exc:
                await self.store.record_failed(claim.id, _describe(exc), retryable=True)
                NOTIFICATIONS.labels(self.kind, "failed").inc()
                log.warning(
                    "notification failed, will retry",
                    event_id=event_id,
                    chat_id=link.chat_id,
                    attempts=claim.attempts,
                    error=_describe(exc),
                )
                return False
        await self.store.record_sent(claim.id, message.message_id)
        NOTIFICATIONS.labels(self.kind, "sent").inc()
        return True
