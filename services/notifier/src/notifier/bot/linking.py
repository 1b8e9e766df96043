"""``/start <code>``: link this chat to the manager whose one-time code it is (any
``/start`` also clears the mark of a chat that had blocked the bot)."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import Message

from jggl_common.contracts import link_code_hash
from notifier.bot import texts
from notifier.store import Store

_REFUSALS = {"unknown": texts.UNKNOWN_CODE, "used": texts.USED_CODE, "expired": texts.EXPIRED_CODE}


async def start(message: Message, command: CommandObject, store: Store) -> None:
    code = (command.args or "").strip()
    await store.clear_blocked(message.chat.id)  # it talks to the bot again: notify it again
    if not code:
        link = await store.link_of_chat(message.chat.id)
        await message.answer(texts.already_linked(link.name) if link else texts.INSTRUCTIONS)
        return
    result = await store.link(link_code_hash(code), message.chat.id)
    if result.outcome in ("linked", "already_linked"):
        await message.answer(texts.linked(result.name))
    else:
        await message.answer(_REFUSALS[result.outcome])


def make_router() -> Router:
    """A fresh router of this feature (a router belongs to one dispatcher)."""
    router = Router(name="linking")
    router.message.register(start, CommandStart(), F.chat.type == "private")
    return router
