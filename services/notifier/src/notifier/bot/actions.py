"""The deal buttons under notifications ("Take", "Reply"), ``/cancel``, and the plain text
that follows "Reply" (see :mod:`notifier.actions`)."""

from __future__ import annotations

import re

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from notifier.actions import DRAFT_TTL, DealActions
from notifier.bot import texts
from notifier.notification_texts import REPLY_DATA, TAKE_DATA
from notifier.projection import Projection
from notifier.store import Store

_BUTTON = re.compile(rf"^({TAKE_DATA}|{REPLY_DATA}):([1-9][0-9]{{0,17}})$")


async def press(
    callback: CallbackQuery, bot: Bot, store: Store, deal_actions: DealActions, projection: Projection
) -> None:
    chat_id = callback.message.chat.id if callback.message is not None else callback.from_user.id
    match = _BUTTON.match(callback.data or "")
    if match is None:
        await callback.answer(texts.BAD_BUTTON, show_alert=True)
        return
    link = await store.link_of_chat(chat_id)
    if link is None:
        await callback.answer()
        await bot.send_message(chat_id, texts.INSTRUCTIONS)
        return
    action, deal_id = match.group(1), int(match.group(2))
    if action == TAKE_DATA:
        outcome = await deal_actions.take(link, chat_id, deal_id, callback.id)
        await callback.answer(texts.TAKING if outcome == "taking" else texts.ALREADY_YOURS)
        return
    await deal_actions.start_reply(link, chat_id, deal_id)
    known = await projection.deal(deal_id)
    await callback.answer()
    await bot.send_message(chat_id, texts.write_reply(known.contact_name if known else None))


async def cancel(message: Message, store: Store, deal_actions: DealActions) -> None:
    if await store.link_of_chat(message.chat.id) is None:
        await message.answer(texts.INSTRUCTIONS)
        return
    await message.answer(
        texts.CANCELLED if await deal_actions.cancel_reply(message.chat.id) else texts.NOTHING_TO_CANCEL
    )


async def drafting(message: Message, deal_actions: DealActions) -> bool:
    """A filter: the chat pressed "Reply" (the draft may have expired; the handler says so)."""
    return await deal_actions.draft(message.chat.id) is not None


async def reply_text(message: Message, store: Store, deal_actions: DealActions) -> None:
    link = await store.link_of_chat(message.chat.id)
    if link is None:
        await message.answer(texts.INSTRUCTIONS)
        return
    outcome, _deal = await deal_actions.reply(link, message.chat.id, message.message_id, message.text or "")
    if outcome == "sending":
        await message.answer(texts.SENDING)
    elif outcome == "expired":
        await message.answer(texts.draft_expired(int(DRAFT_TTL.total_seconds() // 60)))
    else:  # the draft went meanwhile (cancelled, or the chat was linked to someone else)
        await message.answer(texts.HELP)


def make_router() -> Router:
    """A fresh router of this feature (a router belongs to one dispatcher)."""
    router = Router(name="deal-actions")
    router.callback_query.register(press, F.data.startswith(f"{TAKE_DATA}:") | F.data.startswith(f"{REPLY_DATA}:"))
    router.message.register(cancel, Command("cancel"), F.chat.type == "private")
    # Plain text only: a command typed meanwhile is answered as a command and the draft stays.
    router.message.register(reply_text, F.chat.type == "private", F.text, ~F.text.startswith("/"), drafting)
    return router
