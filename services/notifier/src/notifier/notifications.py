"""Notifications from crm's events, each sent at most once per (event, chat).

For every recipient the ``notifications`` row is claimed before anything is sent (its
unique key is the event id and the chat), then the message is sent and the outcome
recorded. A redelivered event, the same event published twice or a second notifier
replica finds the row and sends nothing; a send that failed for a passing reason is
marked retryable and the handler raises, so the bus delivers the event again and only
those chats are tried again. A request Telegram refuses is recorded failed and not
retried; a 403 (the user blocked the bot) also marks the chat's link blocked, and later
notifications to it are recorded skipped without a call to Telegram until the chat sends
``/start`` again.

The kinds: a new lead (``crm.deal.created``), a new message on a deal
(``crm.message.received`` after the first), a hot lead (``crm.deal.hot_lead``), a reply
that failed (``crm.message.failed``), a channel that needs reconnecting
(``crm.channel.needs_reauth``, to the admins) and the goodbye to a chat crm unlinked
(``crm.telegram.unlink_requested``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramUnauthorizedError,
)
from aiogram.types import InlineKeyboardMarkup
from prometheus_client import Counter

from jggl_common.contracts import (
    ChannelNeedsReauth,
    DealCreated,
    DealHotLead,
    MessageFailed,
    MessageReceived,
    TelegramUnlinkRequested,
    utcnow,
)
from jggl_common.logs import get_logger
from notifier.notification_texts import (
    render_hot_lead,
    render_needs_reauth,
    render_new_lead,
    render_new_message,
    render_reply_failed,
    render_unlinked,
)
from notifier.store import BLOCKED_REASON, Link, Store

__all__ = [
    "BLOCKED_REASON",
    "NOTIFICATIONS",
    "HotLeadNotifier",
    "NewLeadNotifier",
    "NewMessageNotifier",
    "NotificationFailed",
    "Notifier",
    "ReauthNotifier",
    "ReplyFailedNotifier",
    "UnlinkNotifier",
    "render_new_lead",
]

log = get_logger(__name__)

NOTIFICATIONS = Counter(
    "jggl_notifier_notifications_total", "Notifications recorded, by kind and status", ["kind", "status"]
)
_PERMANENT = (TelegramForbiddenError, TelegramBadRequest, TelegramNotFound, TelegramUnauthorizedError)
SKIP_REASON = "no Telegram bot token configured"


class NotificationFailed(RuntimeError):
    """Some chats could not be notified for a passing reason; the event is to be redelivered."""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Notifier:
    """One kind of notification: :meth:`deliver` sends a text to chats, once per event and chat."""

    kind = "notification"

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

    async def deliver(
        self, event_id: str, recipients: list[Link], text: str, markup: InlineKeyboardMarkup | None
    ) -> None:
        """Notify every recipient once; raise :class:`NotificationFailed` if some send
        failed for a passing reason (after the others were done)."""
        if not recipients:
            return
        results = await asyncio.gather(*(self._notify(event_id, link, text, markup) for link in recipients))
        failed = [link.chat_id for link, ok in zip(recipients, results, strict=True) if not ok]
        if failed:
            raise NotificationFailed(f"{self.kind} {event_id}: will retry chats {failed}")

    async def _notify(self, event_id: str, link: Link, text: str, markup: InlineKeyboardMarkup | None) -> bool:
        """Send to one chat; False when it should be tried again later."""
        if self.bot is None:
            if await self.store.record_skipped(event_id, link, self.kind, SKIP_REASON):
                NOTIFICATIONS.labels(self.kind, "skipped").inc()
            return True
        if link.blocked_at is not None:
            if await self.store.record_skipped(event_id, link, self.kind, BLOCKED_REASON):
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
                if isinstance(exc, TelegramForbiddenError):
                    await self.store.mark_blocked(link.chat_id)
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


class NewLeadNotifier(Notifier):
    """``crm.deal.created`` → the assignee's chat, or every linked chat while the deal is
    unassigned."""

    kind = "new_lead"

    async def handle(self, event: DealCreated) -> None:
        recipients = await self.store.recipients(event.data.assignee_id)
        if recipients:
            await self.deliver(event.id, recipients, *render_new_lead(event.data, self.app_url))


class NewMessageNotifier(Notifier):
    """``crm.message.received`` after a deal's first message (that one is the new lead) →
    the assignee's chat, or every linked chat while the deal is unassigned."""

    kind = "new_message"

    async def handle(self, event: MessageReceived) -> None:
        if event.data.is_first_message:
            return
        recipients = await self.store.recipients(event.data.assignee_id)
        if recipients:
            await self.deliver(event.id, recipients, *render_new_message(event.data, self.app_url))


class HotLeadNotifier(Notifier):
    """``crm.deal.hot_lead`` → the assignee's chat, or every linked chat while unassigned."""

    kind = "hot_lead"

    async def handle(self, event: DealHotLead) -> None:
        recipients = await self.store.recipients(event.data.deal.assignee_id)
        if recipients:
            await self.deliver(event.id, recipients, *render_hot_lead(event.data, self.app_url))


class ReplyFailedNotifier(Notifier):
    """``crm.message.failed`` → the reply's author when linked, else the deal's assignee
    (nobody when neither is linked)."""

    kind = "reply_failed"

    async def handle(self, event: MessageFailed) -> None:
        recipients: list[Link] = []
        for user_id in (event.data.author_user_id, event.data.assignee_id):
            if user_id is not None:
                recipients = await self.store.recipients(user_id)
                if recipients:
                    break
        if recipients:
            await self.deliver(event.id, recipients, *render_reply_failed(event.data, self.app_url))


class ReauthNotifier(Notifier):
    """``crm.channel.needs_reauth`` → every linked admin."""

    kind = "channel_needs_reauth"

    async def handle(self, event: ChannelNeedsReauth) -> None:
        recipients = await self.store.links_with_role("admin")
        if recipients:
            await self.deliver(event.id, recipients, render_needs_reauth(event.data), None)


class UnlinkNotifier(Notifier):
    """``crm.telegram.unlink_requested`` → the user's link and unused codes are removed, and
    the chat that was linked is told so, once (the row is logged with the unlink itself, so
    a redelivery after the link is gone still finishes the goodbye and never repeats it)."""

    kind = "unlinked"

    async def handle(self, event: TelegramUnlinkRequested) -> None:
        skip = SKIP_REASON if self.bot is None else None
        await self.store.unlink_user(event.id, event.data.user_id, self.kind, skip_reason=skip)
        recipients = await self.store.unlink_notices(event.id, self.kind)
        if recipients:
            await self.deliver(event.id, recipients, render_unlinked(event.data.reason), None)
        log.info(
            "Telegram unlinked by crm", user_id=event.data.user_id, reason=event.data.reason, chats=len(recipients)
        )
