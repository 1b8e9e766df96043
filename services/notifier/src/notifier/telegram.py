"""The aiogram ``Bot`` the notifier talks to Telegram with: 429s are waited out.

Telegram answers 429 with ``retry_after`` when a chat (about 1 message/s) or the bot
(about 30/s) goes too fast, and aiogram does not retry by itself. Every request of the
bot, a notification or an answer to a command alike, goes through :class:`RetryAfter`,
which waits the time Telegram asked for and sends the same request again, a bounded
number of times.

Before that, every request that sends to a chat (``send*``, ``edit*``, ``copy*``,
``forward*``; not ``answerCallbackQuery``, which is per query) waits for its slot in
:class:`Pace`: about ``TELEGRAM_PER_CHAT_PER_SECOND`` per chat (a burst of 3) and
``TELEGRAM_GLOBAL_PER_SECOND`` for the bot, per process (see :mod:`notifier.pacing`, whose
metrics say how many wait and how long). A request repeated after a 429 waits for a slot
again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from prometheus_client import Counter

from jggl_common.logs import get_logger
from notifier.config import NotifierSettings
from notifier.pacing import Pacer

__all__ = ["RETRY_AFTERS", "Pace", "RetryAfter", "make_bot"]

log = get_logger(__name__)

RETRY_AFTERS = Counter("jggl_notifier_telegram_retry_after_total", "429 answers from Telegram (retry_after)")
_PACED_PREFIXES = ("Send", "Edit", "Copy", "Forward")


class Pace(BaseRequestMiddleware):
    """Waits for the chat's and the bot's slot (:class:`~notifier.pacing.Pacer`) before a
    request that sends to a chat; other requests go at once."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer

    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]
    ) -> Response[Any]:
        chat_id = getattr(method, "chat_id", None)
        if chat_id is not None and type(method).__name__.startswith(_PACED_PREFIXES):
            await self.pacer.wait(chat_id)
        return await make_request(bot, method)


class RetryAfter(BaseRequestMiddleware):
    """Waits out a 429's ``retry_after`` and repeats the request, at most ``retries``
    times and never for a wait over ``cap`` seconds; then the error propagates."""

    def __init__(self, retries: int = 3, cap: float = 60.0) -> None:
        self.retries = retries
        self.cap = cap

    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]
    ) -> Response[Any]:
        done = 0
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                RETRY_AFTERS.inc()
                if done >= self.retries or exc.retry_after > self.cap:
                    raise
                done += 1
                log.info(
                    "telegram asked to wait",
                    method=type(method).__name__,
                    chat_id=getattr(method, "chat_id", None),
                    retry_after=exc.retry_after,
                    retry=done,
                )
                await asyncio.sleep(exc.retry_after)


def make_bot(settings: NotifierSettings) -> Bot | None:
    """The bot for ``TELEGRAM_BOT_TOKEN`` (None without a token), on ``TELEGRAM_API_URL``
    when one is set. HTML is the default parse mode: every text we build escapes what it
    did not write itself."""
    token = settings.telegram_bot_token.strip()
    if not token:
        return None
    session = (
        AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url.rstrip("/")))
        if settings.telegram_api_url
        else AiohttpSession()
    )
    # The first registered is the outermost: a request repeated after a 429 is paced again.
    session.middleware(RetryAfter(settings.telegram_max_retry_after, settings.telegram_retry_after_cap_seconds))
    session.middleware(Pace(Pacer(settings.telegram_per_chat_per_second, settings.telegram_global_per_second)))
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
