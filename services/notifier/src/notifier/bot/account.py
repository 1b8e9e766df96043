"""``/help`` and ``/stop`` (unlink this chat)."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from notifier.bot import texts
from notifier.store import Store


async def help_(message: Message, store: Store) -> None:
    link = await store.link_of_chat(message.chat.id)
    await message.answer(texts.HELP if link else texts.INSTRUCTIONS)


async def stop(message: Message, store: Store) -> None:
    link = await store.unlink_chat(message.chat.id)
    await message.answer(texts.UNLINKED if link else texts.NOT_LINKED)


def make_router() -> Router:
    """A fresh router of this feature (a router belongs to one dispatcher)."""
    router = Router(name="account")
    router.message.register(help_, Command("help"))
    router.message.register(stop, Command("stop"))
    return router
