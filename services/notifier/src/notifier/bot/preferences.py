"""``/mute``, ``/unmute``, ``/quiet`` and ``/notify``: a manager's notification preferences
(:mod:`notifier.preferences`). Quiet hours are read in the business time zone; changing
them reschedules what waits, and ``/unmute`` lets it follow, rather than dropping it."""

from __future__ import annotations

from datetime import datetime

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from jggl_common.contracts import utcnow
from notifier.bot import preference_texts as say
from notifier.bot import texts
from notifier.business_time import BusinessClock
from notifier.preferences import Preferences, QuietHoursError, kinds_for, parse_quiet_hours, quiet_until
from notifier.store import Link, Store


def _quiet_now(prefs: Preferences, clock: BusinessClock) -> datetime | None:
    """When the quiet period the business clock is in now ends; None outside quiet hours."""
    hours = prefs.quiet_hours
    return quiet_until(utcnow(), *hours, clock.zone()) if hours else None


async def _linked(message: Message, store: Store) -> Link | None:
    """The chat's link; an unlinked chat is told how to link."""
    link = await store.link_of_chat(message.chat.id)
    if link is None:
        await message.answer(texts.INSTRUCTIONS)
    return link


async def mute(message: Message, store: Store) -> None:
    if link := await _linked(message, store):
        await store.set_muted(link.user_id, True)
        await message.answer(say.MUTED)


async def unmute(message: Message, store: Store, clock: BusinessClock) -> None:
    if link := await _linked(message, store):
        prefs = await store.set_muted(link.user_id, False)
        # What waits is claimed again now that the user is not muted: at once, or when
        # the quiet hours under way end.
        waiting = await store.deferred_count(link.user_id)
        await message.answer(say.unmuted(waiting, _quiet_now(prefs, clock), clock.zone()))


async def quiet(message: Message, command: CommandObject, store: Store, clock: BusinessClock) -> None:
    link = await _linked(message, store)
    if link is None:
        return
    args = (command.args or "").strip()
    zone = clock.zone()
    if not args:
        prefs = await store.preferences(link.user_id)
        await message.answer(say.quiet_status(prefs, zone, _quiet_now(prefs, clock)))
        return
    if args.lower() == "off":
        await store.set_quiet_hours(link.user_id, None, None)
        waiting = await store.reschedule_deferred(link.user_id, utcnow())
        await message.answer(say.quiet_off(waiting))
        return
    try:
        start, end = parse_quiet_hours(args)
    except QuietHoursError as exc:
        await message.answer(say.quiet_invalid(str(exc), zone))
        return
    prefs = await store.set_quiet_hours(link.user_id, start, end)
    until = _quiet_now(prefs, clock)
    waiting = await store.reschedule_deferred(link.user_id, until or utcnow())
    await message.answer(say.quiet_set(start, end, zone, until, waiting))


async def notify(message: Message, store: Store) -> None:
    if link := await _linked(message, store):
        prefs = await store.preferences(link.user_id)
        await message.answer(say.notify_text(prefs), reply_markup=say.notify_keyboard(prefs, kinds_for(link.role)))


async def switch(callback: CallbackQuery, store: Store) -> None:
    """A ``/notify`` switch pressed: toggle that kind and show the switches as they are now."""
    message = callback.message
    if not isinstance(message, Message):  # too old for Telegram to show it
        await callback.answer(say.STALE_BUTTON, show_alert=True)
        return
    link = await store.link_of_chat(message.chat.id)
    if link is None:
        await callback.answer(texts.NOT_LINKED)
        await message.answer(texts.INSTRUCTIONS)
        return
    kind = (callback.data or "").removeprefix(f"{say.PREF_DATA}:")
    kinds = kinds_for(link.role)
    if kind not in kinds:
        await callback.answer(say.STALE_BUTTON, show_alert=True)
        return
    prefs = await store.toggle_kind(link.user_id, kind)
    await message.edit_text(say.notify_text(prefs), reply_markup=say.notify_keyboard(prefs, kinds))
    await callback.answer(say.kind_switched(kind, prefs))


def make_router() -> Router:
    """A fresh router of this feature (a router belongs to one dispatcher)."""
    router = Router(name="preferences")
    private = F.chat.type == "private"
    router.message.register(mute, Command("mute"), private)
    router.message.register(unmute, Command("unmute"), private)
    router.message.register(quiet, Command("quiet"), private)
    router.message.register(notify, Command("notify"), private)
    router.callback_query.register(switch, F.data.startswith(f"{say.PREF_DATA}:"))
    return router
