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

The kinds: a new lead (a deal's first ``crm.message.received``), a new message on a deal
(``crm.message.received`` after the first) and a hot lead (``crm.deal.hot_lead``), each to
the deal's assignee, or while the deal is unassigned to those ``notify.unassigned_leads``
chooses (:mod:`notifier.unassigned`); a reply that failed (``crm.message.failed``), a channel that
needs reconnecting (``crm.channel.needs_reauth``, to the admins) and the goodbye to a chat
crm unlinked (``crm.telegram.unlink_requested``). The scheduler's reminders are in
:mod:`notifier.reminders`.

Each recipient's preferences (:mod:`notifier.preferences`) are applied first: muted or the
kind switched off → recorded ``skipped`` with the reason; in quiet hours → recorded
``deferred`` with the text and keyboard, and :class:`DeferredNotifier` (a sweeper in every
replica) sends it when they end, with the same pacing and failure handling. Essential
notifications pass them: the kinds of :data:`~notifier.preferences.ESSENTIAL_KINDS` (the
unlink goodbye, crm's answers to the bot's commands) and a failed reply told to its author.

A notification about a deal (a new lead or message, a hot lead, a failed reply, an overdue
reply, a task due) keeps its text, keyboard and the customer's name it shows
(:class:`Naming`). When the projection already knows a newer name than the event's, the
text shows that one; what was sent or held with an older name is corrected later
(:mod:`notifier.renames`, and a held one when it is sent).

``jggl_notifier_delivery_seconds{kind}`` observes, for each notification sent at once, the
time from the event (``occurred_at``) to Telegram accepting the message; deferred ones
are not observed (their wait is the quiet hours, not the system's latency).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramUnauthorizedError,
)
from aiogram.types import InlineKeyboardMarkup
from prometheus_client import Counter, Histogram

from jggl_common.contracts import (
    ChannelNeedsReauth,
    ContactRef,
    DealHotLead,
    MessageFailed,
    MessageReceived,
    TelegramUnlinkRequested,
    utcnow,
)
from jggl_common.logs import get_logger
from notifier.business_time import BusinessClock
from notifier.notification_texts import (
    contact_name,
    renamed,
    render_hot_lead,
    render_needs_reauth,
    render_new_lead,
    render_new_message,
    render_reply_failed,
    render_unlinked,
)
from notifier.preferences import ESSENTIAL_KINDS, Defer, Preferences, Skip, decide
from notifier.projection import ContactName, Projection
from notifier.store import BLOCKED_REASON, Deferred, Link, Naming, Store
from notifier.unassigned import UnassignedRecipients

__all__ = [
    "BLOCKED_REASON",
    "DELIVERY_SECONDS",
    "NOTIFICATIONS",
    "DeferredNotifier",
    "HotLeadNotifier",
    "Naming",
    "NewLeadNotifier",
    "NewMessageNotifier",
    "NotificationFailed",
    "Notifier",
    "ReauthNotifier",
    "ReplyFailedNotifier",
    "UnlinkNotifier",
    "naming",
    "render_new_lead",
]

log = get_logger(__name__)

NOTIFICATIONS = Counter(
    "jggl_notifier_notifications_total", "Notifications recorded, by kind and status", ["kind", "status"]
)
DELIVERY_SECONDS = Histogram(
    "jggl_notifier_delivery_seconds",
    "From the event (occurred_at) to Telegram accepting the notification, by kind (sent at once; not deferred ones)",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0),
)
_PERMANENT = (TelegramForbiddenError, TelegramBadRequest, TelegramNotFound, TelegramUnauthorizedError)
SKIP_REASON = "no Telegram bot token configured"
UNLINKED_REASON = "the chat is no longer linked to this user"


def naming(deal_id: int, contact: ContactRef, occurred_at: datetime) -> Naming:
    """What a notification about the deal shows of its customer, from an event's contact."""
    return Naming(deal_id, contact_name(contact), occurred_at)


class NotificationFailed(RuntimeError):
    """Some chats could not be notified for a passing reason; the event is to be redelivered."""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _dump(markup: InlineKeyboardMarkup | None) -> dict[str, Any] | None:
    return None if markup is None else markup.model_dump(mode="json", exclude_none=True)


def _unreachable(link: Link | None, user_id: int) -> str | None:
    """Why a notification held for ``user_id`` can no longer go to the chat of ``link``."""
    if link is None or link.user_id != user_id:
        return UNLINKED_REASON
    return BLOCKED_REASON if link.blocked_at is not None else None


class Notifier:
    """One kind of notification: :meth:`deliver` sends a text to chats, once per event and chat."""

    kind = "notification"

    def __init__(
        self,
        store: Store,
        bot: Bot | None,
        app_url: str,
        *,
        clock: BusinessClock | None = None,
        stale_after: timedelta = timedelta(minutes=5),
        parallel: int = 8,
        projection: Projection | None = None,
        unassigned: UnassignedRecipients | None = None,
    ) -> None:
        self.store = store
        self.bot = bot
        self.app_url = app_url
        self.clock = clock or BusinessClock()
        """The business time zone, in which quiet hours are read."""
        self.projection = projection or Projection(store.sessions)
        """Where a newer name of a deal's customer is looked up."""
        self.unassigned = unassigned
        """Who is told when the deal is unassigned (None: every linked chat)."""
        self.stale_after = stale_after
        self._parallel = asyncio.Semaphore(parallel)

    async def recipients(self, event_id: str, assignee_id: int | None, deal_id: int) -> list[Link]:
        """The assignee's linked chat; for the unassigned deal ``deal_id``, those
        :attr:`unassigned` chooses for ``event_id`` (every linked chat without it)."""
        if assignee_id is None and self.unassigned is not None:
            return await self.unassigned.recipients(event_id, self.kind, deal_id)
        return await self.store.recipients(assignee_id)

    async def deliver(
        self,
        event_id: str,
        recipients: Sequence[Link],
        text: str,
        markup: InlineKeyboardMarkup | None,
        *,
        occurred_at: datetime | None = None,
        essential: bool = False,
        about: Naming | None = None,
    ) -> None:
        """Notify every recipient once, as their preferences allow (unless ``essential`` or
        of an essential kind); raise :class:`NotificationFailed` if some send failed for a
        passing reason (after the others were done). ``occurred_at``, the event's, is where
        the delivery time is measured from. ``about``: the deal and the customer's name the
        text shows (kept with the text; a newer name the projection knows replaces it)."""
        if not recipients:
            return
        if about is not None:
            text, about = await self._newest_name(text, about)
        essential = essential or self.kind in ESSENTIAL_KINDS
        prefs = {} if essential else await self.store.preferences_of(link.user_id for link in recipients)
        results = await asyncio.gather(
            *(
                self._notify(event_id, link, text, markup, prefs.get(link.user_id), occurred_at, about)
                for link in recipients
            )
        )
        failed = [link.chat_id for link, ok in zip(recipients, results, strict=True) if not ok]
        if failed:
            raise NotificationFailed(f"{self.kind} {event_id}: will retry chats {failed}")

    async def _newest_name(self, text: str, about: Naming) -> tuple[str, Naming]:
        """``text`` showing the newest name the projection knows of the deal's customer."""
        newer: ContactName | None = await self.projection.newer_name(about.deal_id, about.at)
        if newer is None:
            return text, about
        changed = text if newer.name == about.name else renamed(text, about.name, newer.name)
        if changed is None:
            return text, about
        return changed, Naming(about.deal_id, newer.name, newer.at)

    async def _notify(
        self,
        event_id: str,
        link: Link,
        text: str,
        markup: InlineKeyboardMarkup | None,
        prefs: Preferences | None,
        occurred_at: datetime | None,
        about: Naming | None = None,
    ) -> bool:
        """Send to one chat (``prefs`` None: essential); False when it should be tried again later."""
        bot = self.bot
        if bot is None or link.blocked_at is not None:
            reason = SKIP_REASON if bot is None else BLOCKED_REASON
            if await self.store.record_skipped(event_id, link, self.kind, reason):
                NOTIFICATIONS.labels(self.kind, "skipped").inc()
            return True
        decision = decide(prefs, self.kind, utcnow(), self.clock.zone()) if prefs is not None else None
        if isinstance(decision, Skip | Defer):
            return await self._hold(event_id, link, text, markup, decision, about)
        kept = None if about is None else _dump(markup)
        claim = await self.store.claim(
            event_id, link, self.kind, stale_before=utcnow() - self.stale_after, about=about, text=text, markup=kept
        )
        if claim is None:
            # Sent, skipped, deferred or given up before: done. Being sent elsewhere right now
            # (an overlapping delivery): look again later, in case that attempt dies midway.
            return await self.store.status(event_id, link.chat_id) != "pending"
        error = await self._send(bot, claim.id, link.chat_id, self.kind, text, markup, occurred_at=occurred_at)
        if error is None:
            return True
        await self.store.record_failed(claim.id, _describe(error), retryable=True)
        NOTIFICATIONS.labels(self.kind, "failed").inc()
        log.warning(
            "notification failed, will retry",
            event_id=event_id,
            chat_id=link.chat_id,
            attempts=claim.attempts,
            error=_describe(error),
        )
        return False

    async def _hold(
        self,
        event_id: str,
        link: Link,
        text: str,
        markup: InlineKeyboardMarkup | None,
        decision: Skip | Defer,
        about: Naming | None = None,
    ) -> bool:
        """Record a notification the preferences skip or defer (nothing if it has a row);
        False when it is being sent elsewhere right now (look again later)."""
        if isinstance(decision, Skip):
            if await self.store.record_skipped(event_id, link, self.kind, decision.reason):
                NOTIFICATIONS.labels(self.kind, "skipped").inc()
            return True
        if await self.store.record_deferred(
            event_id, link, self.kind, text, _dump(markup), decision.until, about=about
        ):
            NOTIFICATIONS.labels(self.kind, "deferred").inc()
            return True
        return await self.store.status(event_id, link.chat_id) != "pending"

    async def _send(
        self,
        bot: Bot,
        notification_id: int,
        chat_id: int,
        kind: str,
        text: str,
        markup: InlineKeyboardMarkup | None,
        *,
        occurred_at: datetime | None,
        about: Naming | None = None,
    ) -> Exception | None:
        """Send one claimed notification and record it ``sent`` (with ``text`` and the name
        it shows when ``about`` is given), or ``failed`` for good when Telegram refuses it (a
        403 also marks the chat blocked); None then. A failure worth retrying is returned,
        not recorded: the caller decides when to try again."""
        async with self._parallel:
            try:
                message = await bot.send_message(chat_id, text, reply_markup=markup)
            except _PERMANENT as exc:
                if isinstance(exc, TelegramForbiddenError):
                    await self.store.mark_blocked(chat_id)
                await self.store.record_failed(notification_id, _describe(exc), retryable=False)
                NOTIFICATIONS.labels(kind, "failed").inc()
                log.warning(
                    "notification refused by Telegram", id=notification_id, chat_id=chat_id, error=_describe(exc)
                )
                return None
            except Exception as exc:
                return exc
        if occurred_at is not None:
            DELIVERY_SECONDS.labels(kind).observe(max(0.0, (utcnow() - occurred_at).total_seconds()))
        await self.store.record_sent(notification_id, message.message_id, text=text, about=about)
        NOTIFICATIONS.labels(kind, "sent").inc()
        return None


class DeferredNotifier(Notifier):
    """Sends the notifications quiet hours held, once they end.

    Every replica runs :meth:`run`: each sweep claims the due rows (atomically: two replicas
    never take one; leased for ``stale_after``, so a replica dying mid-send leaves them to
    be taken again) and sends them through the same paced bot, each chat's in the order
    they came, chats side by side. The user's preferences are read again first: a kind
    switched off meanwhile is skipped, quiet hours moved later hold it again, and a muted
    user's wait for ``/unmute`` (they are not claimed). A chat unlinked or blocked meanwhile
    is skipped; a failure worth retrying is tried again after a backoff, at most
    ``max_attempts`` times, then recorded failed.
    """

    kind = "deferred"

    def __init__(
        self,
        store: Store,
        bot: Bot | None,
        app_url: str,
        *,
        clock: BusinessClock | None = None,
        batch: int = 100,
        max_attempts: int = 8,
        retry_base_seconds: float = 5.0,
        stale_after: timedelta = timedelta(minutes=5),
        parallel: int = 8,
    ) -> None:
        super().__init__(store, bot, app_url, clock=clock, stale_after=stale_after, parallel=parallel)
        self.batch = batch
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        """The first backoff after a passing failure; doubled each time, at most 5 minutes."""
        self._stopping = asyncio.Event()

    async def run(self, interval: float) -> None:
        """Sweep every ``interval`` seconds until :meth:`stop` (the sweep under way finishes)."""
        self._stopping.clear()
        while not self._stopping.is_set():
            try:
                while await self.sweep() >= self.batch:  # a full batch: more may be due
                    pass
            except Exception as exc:  # the database away for a while: try again next time
                log.error("deferred notifications not swept", error=_describe(exc))
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)

    def stop(self) -> None:
        """Stop :meth:`run` after the sweep under way."""
        self._stopping.set()

    async def sweep(self) -> int:
        """Send the due deferred notifications once; how many were claimed."""
        bot = self.bot
        if bot is None:  # no token now: they wait for one
            return 0
        now = utcnow()
        due = await self.store.claim_deferred(now, now + self.stale_after, self.batch)
        if not due:
            return 0
        prefs = await self.store.preferences_of(row.user_id for row in due)
        chats: dict[int, list[Deferred]] = {}
        for row in due:
            chats.setdefault(row.chat_id, []).append(row)
        await asyncio.gather(*(self._send_chat(bot, rows, prefs) for rows in chats.values()))
        return len(due)

    async def _send_chat(self, bot: Bot, rows: list[Deferred], prefs: dict[int, Preferences]) -> None:
        link = await self.store.link_of_chat(rows[0].chat_id)
        for row in rows:
            await self._send_deferred(bot, row, link, prefs[row.user_id])

    async def _send_deferred(self, bot: Bot, row: Deferred, link: Link | None, prefs: Preferences) -> None:
        reason = _unreachable(link, row.user_id)
        if reason is not None:
            await self.store.skip_deferred(row.id, reason)
            NOTIFICATIONS.labels(row.kind, "skipped").inc()
            return
        now = utcnow()
        if prefs.muted:  # muted since the claim: wait for /unmute
            await self.store.defer_again(row.id, now)
            return
        decision = decide(prefs, row.kind, now, self.clock.zone())
        if isinstance(decision, Skip):
            await self.store.skip_deferred(row.id, decision.reason)
            NOTIFICATIONS.labels(row.kind, "skipped").inc()
            return
        if isinstance(decision, Defer):
            await self.store.defer_again(row.id, decision.until)
            return
        markup = None if row.markup is None else InlineKeyboardMarkup.model_validate(row.markup)
        text, about = row.text, row.about
        if about is not None:  # the customer's name may have become known while it waited
            text, about = await self._newest_name(text, about)
        error = await self._send(bot, row.id, row.chat_id, row.kind, text, markup, occurred_at=None, about=about)
        if error is None:
            return
        NOTIFICATIONS.labels(row.kind, "failed").inc()
        if row.attempts >= self.max_attempts:
            await self.store.record_failed(row.id, _describe(error), retryable=False)
            log.error("deferred notification given up", id=row.id, chat_id=row.chat_id, error=_describe(error))
            return
        retry_at = now + timedelta(seconds=min(300.0, self.retry_base_seconds * 2 ** (row.attempts - 1)))
        await self.store.defer_again(row.id, retry_at, _describe(error))
        log.warning("deferred notification failed, will retry", id=row.id, chat_id=row.chat_id, error=_describe(error))


class _CustomerMessageNotifier(Notifier):
    """A customer's message → the assignee's chat, or while the deal is unassigned those
    :attr:`unassigned` chooses (every linked chat without it), with the AI's summary of the
    deal when the projection has one."""

    first_message = False
    """Which messages this notifier announces: a deal's first one (a new lead) or the later ones."""

    async def handle(self, event: MessageReceived) -> None:
        data = event.data
        if data.is_first_message != self.first_message:
            return
        recipients = await self.recipients(event.id, data.assignee_id, data.deal_id)
        if recipients:
            summary = await self.projection.summary(data.deal_id)
            render = render_new_lead if self.first_message else render_new_message
            await self.deliver(
                event.id,
                recipients,
                *render(data, self.app_url, summary),
                occurred_at=event.occurred_at,
                about=naming(data.deal_id, data.contact, event.occurred_at),
            )


class NewLeadNotifier(_CustomerMessageNotifier):
    """``crm.message.received`` of a deal's first message: who, what they wrote."""

    kind = "new_lead"
    first_message = True


class NewMessageNotifier(_CustomerMessageNotifier):
    """``crm.message.received`` after a deal's first message (that one is the new lead)."""

    kind = "new_message"


class HotLeadNotifier(Notifier):
    """``crm.deal.hot_lead`` → the assignee's chat, or while the deal is unassigned those
    :attr:`unassigned` chooses (every linked chat without it)."""

    kind = "hot_lead"

    async def handle(self, event: DealHotLead) -> None:
        deal = event.data.deal
        recipients = await self.recipients(event.id, deal.assignee_id, deal.id)
        if recipients:
            await self.deliver(
                event.id,
                recipients,
                *render_hot_lead(event.data, self.app_url),
                occurred_at=event.occurred_at,
                about=naming(deal.id, deal.contact, event.occurred_at),
            )


class ReplyFailedNotifier(Notifier):
    """``crm.message.failed`` → the reply's author when linked (essential: whatever their
    preferences, they wrote it), else the deal's assignee (nobody when neither is linked)."""

    kind = "reply_failed"

    async def handle(self, event: MessageFailed) -> None:
        recipients: list[Link] = []
        for user_id in (event.data.author_user_id, event.data.assignee_id):
            if user_id is not None:
                recipients = await self.store.recipients(user_id)
                if recipients:
                    break
        if recipients:
            to_author = recipients[0].user_id == event.data.author_user_id
            await self.deliver(
                event.id,
                recipients,
                *render_reply_failed(event.data, self.app_url),
                occurred_at=event.occurred_at,
                essential=to_author,
                about=naming(event.data.deal_id, event.data.contact, event.occurred_at),
            )


class ReauthNotifier(Notifier):
    """``crm.channel.needs_reauth`` → every linked admin."""

    kind = "channel_needs_reauth"

    async def handle(self, event: ChannelNeedsReauth) -> None:
        recipients = await self.store.links_with_role("admin")
        if recipients:
            await self.deliver(
                event.id, recipients, render_needs_reauth(event.data), None, occurred_at=event.occurred_at
            )


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
            await self.deliver(
                event.id, recipients, render_unlinked(event.data.reason), None, occurred_at=event.occurred_at
            )
        log.info(
            "Telegram unlinked by crm", user_id=event.data.user_id, reason=event.data.reason, chats=len(recipients)
        )
