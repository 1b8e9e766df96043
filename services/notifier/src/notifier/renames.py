"""A customer's name, corrected where the bot already showed it.

crm announces a customer's first message before it has read their Meta profile, so a new
lead often says "New customer"; ``crm.contact.updated`` then brings the name (or a later
edit of it), with the contact's open deals. :class:`ContactRenames` keeps it in the
projection (newest by ``occurred_at``: later notifications, ``/deals`` and the buttons'
answers show it) and edits in place the notifications about those deals that show an
older name (``editMessageText`` with the same inline keyboard), each once:

* a notification is taken for editing under a lease (``renaming_at``), and records the
  name it shows once edited, so a redelivered or republished event, or another replica,
  finds nothing left to edit;
* only messages sent in the last :data:`EDITABLE_FOR` (Telegram refuses edits after that),
  to a chat still linked to the same user and not blocked, who may see the deal (its
  assignee, an admin, or anyone while it is unassigned);
* edits are paced like every send to a chat (:mod:`notifier.telegram`), a 429 is waited
  out there; a failure that may pass (429 again, the network) leaves the notification to
  a redelivery of the event, which is asked for by raising :class:`NotificationFailed`,
  as is one that was busy elsewhere (being edited or sent with an older name right now);
* "message is not modified" means it already shows the name; a 403 marks the chat
  blocked; any other refusal (too old, deleted) leaves the message as it is, for good.

A notification held by quiet hours is not edited: it is sent with the newest name
(:class:`~notifier.notifications.DeferredNotifier`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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

from jggl_common.contracts import ContactUpdated, utcnow
from jggl_common.logs import get_logger
from notifier.notification_texts import renamed
from notifier.notifications import NotificationFailed
from notifier.projection import Projection
from notifier.store import Rename, Store

__all__ = ["EDITABLE_FOR", "RENAMES", "ContactRenames"]

log = get_logger(__name__)

RENAMES = Counter(
    "jggl_notifier_renames_total",
    "Sent notifications whose customer's name was to be corrected, by outcome"
    " (edited, unchanged: it already showed it, refused: Telegram will not edit it, failed: tried again)",
    ["outcome"],
)
EDITABLE_FOR = timedelta(hours=48)
"""How long after it was sent a message is still edited."""
_NOT_MODIFIED = "message is not modified"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class ContactRenames:
    """``crm.contact.updated`` → the projection's name, and the notifications showing an
    older one edited. ``bot`` gives the bot of the current token (None: no token, nothing
    is edited; the projection still learns the name)."""

    def __init__(
        self,
        store: Store,
        projection: Projection,
        bot: Callable[[], Bot | None],
        *,
        stale_after: timedelta = timedelta(minutes=5),
        parallel: int = 8,
    ) -> None:
        self.store = store
        self.projection = projection
        self.bot = bot
        self.stale_after = stale_after
        self._parallel = asyncio.Semaphore(parallel)

    async def handle(self, event: ContactUpdated) -> None:
        """Keep the name, then correct what was sent; raise :class:`NotificationFailed`
        when some of it is to be tried again (on a redelivery)."""
        await self.projection.apply(event)
        deals = {deal.id: deal.assignee_id for deal in event.data.open_deals}
        bot = self.bot()
        if not deals or bot is None:
            return
        now = utcnow()
        renames, busy = await self.store.claim_renames(
            deals, now=now, stale_before=now - self.stale_after, sent_after=now - EDITABLE_FOR
        )
        results = await asyncio.gather(*(self._edit(bot, rename) for rename in renames))
        retry = sum(not done for done in results)
        if retry or busy:
            raise NotificationFailed(
                f"contact {event.data.contact.id}: {retry} edits to try again, {busy} notifications busy elsewhere"
            )

    async def _edit(self, bot: Bot, rename: Rename) -> bool:
        """Edit one message to show the newest name; False when it is to be tried again."""
        text = renamed(rename.text, rename.shown, rename.to)
        if text is None:  # not a text this notifier wrote with that name: leave it
            await self.store.refuse_rename(rename.id, "the text does not show the name it recorded")
            RENAMES.labels("refused").inc()
            return True
        markup = None if rename.markup is None else InlineKeyboardMarkup.model_validate(rename.markup)
        async with self._parallel:
            try:
                await bot.edit_message_text(
                    text=text, chat_id=rename.chat_id, message_id=rename.message_id, reply_markup=markup
                )
                outcome = "edited"
            except Exception as exc:
                outcome = await self._refused(rename, exc)
        if outcome in ("edited", "unchanged"):
            await self.store.record_renamed(rename, text)
        RENAMES.labels(outcome).inc()
        return outcome != "failed"

    async def _refused(self, rename: Rename, exc: Exception) -> str:
        """What an edit's error means for the notification: ``unchanged`` (it shows the name
        already), ``refused`` (left as it is) or ``failed`` (to be tried again)."""
        error = _describe(exc)
        if isinstance(exc, TelegramBadRequest):
            if _NOT_MODIFIED in str(exc):
                return "unchanged"
            await self.store.refuse_rename(rename.id, error)  # too old, deleted...: for good
            log.info("name not corrected: Telegram refused the edit", id=rename.id, error=error)
            return "refused"
        await self.store.release_rename(rename.id)
        if isinstance(exc, TelegramForbiddenError):
            await self.store.mark_blocked(rename.chat_id)
        if isinstance(exc, TelegramForbiddenError | TelegramNotFound | TelegramUnauthorizedError):
            log.info("name not corrected: Telegram refused the request", id=rename.id, error=error)
            return "refused"
        log.warning("name not corrected, will retry", id=rename.id, error=error)
        return "failed"
