"""Anything else in a private chat: an unlinked chat gets the linking instructions, a linked
one the help."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import Message

from notifier.bot import texts
from notifier.store import Store


async def anything_else(message: Message, store: Store) -> None:
    link = await store.link_of_chat(message.chat.id)
    await message.answer(texts.HELP if link else texts.INSTRUCTIONS)


def make_router() -> Router:
    """A fresh router of this feature (a router belongs to one dispatcher)."""
    router = Router(name="fallback")
    router.message.register(anything_else, F.chat.type == "private")  # groups: stay quiet
    return router
