"""The Telegram fake, driven by the real aiogram 3 Bot and Dispatcher: messages, keyboards, faults, updates."""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import CallbackQuery, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiohttp import web

from jggl_sandbox.telegram_fake import FakeTelegram, HtmlParseError, TelegramFakeServer, parse_html

TOKEN = "123456:test-token_ABC"
CHAT = 4242

pytestmark = pytest.mark.timeout(10)


@pytest.fixture(scope="module")
def server() -> Iterator[TelegramFakeServer]:
    with TelegramFakeServer(tokens={TOKEN}) as running:
        yield running


@pytest.fixture
def fake(server: TelegramFakeServer) -> FakeTelegram:
    server.fake.reset()
    server.fake.set_rate_limits(True)
    return server.fake


@pytest_asyncio.fixture
async def bot(server: TelegramFakeServer, fake: FakeTelegram) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(server.url))
    async with Bot(TOKEN, session=session) as client:
        yield client


def keyboard() -> Any:
    builder = InlineKeyboardBuilder()
    builder.button(text="Take the deal", callback_data="take:17")
    builder.button(text="Open", url="https://crm.example/deals/17")
    return builder.as_markup()


async def test_get_me_is_the_bot_of_the_token(bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456
    assert me.is_bot
    assert me.username == "jggl_sandbox_bot"


async def test_a_message_with_an_inline_keyboard_round_trips(bot: Bot, fake: FakeTelegram) -> None:
    fake.user_sends(CHAT, "/start LINK42")
    message = await bot.send_message(CHAT, "<b>New lead</b> from Instagram", parse_mode="HTML", reply_markup=keyboard())
    assert message.chat.id == CHAT
    assert message.chat.type == "private"
    assert message.from_user is not None
    assert message.from_user.is_bot
    assert message.text == "New lead from Instagram"
    assert message.entities is not None
    assert (message.entities[0].type, message.entities[0].length) == ("bold", 8)
    assert message.reply_markup is not None
    assert message.reply_markup.inline_keyboard[0][0].callback_data == "take:17"
    assert message.message_id == 2  # the user's /start was message 1 of the chat
    [sent] = fake.sent(CHAT)
    assert sent.text == "<b>New lead</b> from Instagram"
    assert sent.parse_mode == "HTML"
    assert sent.reply_markup is not None
    assert sent.reply_markup["inline_keyboard"][0][1]["url"].endswith("/17")

    edited = await bot.edit_message_text(
        text="Taken by Olga", chat_id=CHAT, message_id=message.message_id, reply_markup=None
    )
    assert isinstance(edited, Message)
    assert edited.text == "Taken by Olga"
    assert edited.reply_markup is None
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(text="Taken by Olga", chat_id=CHAT, message_id=message.message_id)
    assert await bot.delete_message(CHAT, message.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(CHAT, message.message_id)


async def test_unescaped_customer_text_is_refused_and_escaped_text_passes(bot: Bot, fake: FakeTelegram) -> None:
    fake.add_chat(CHAT)
    customer = "price < 100 & <script>alert(1)</script>"
    with pytest.raises(TelegramBadRequest) as refused:
        await bot.send_message(CHAT, f"<b>Customer:</b> {customer}", parse_mode="HTML")
    assert refused.value.message == ('Bad Request: can\'t parse entities: Unsupported start tag "" at byte offset 23')
    message = await bot.send_message(CHAT, f"<b>Customer:</b> {html.escape(customer)}", parse_mode="HTML")
    assert message.text == f"Customer: {customer}"
    assert [s.plain_text for s in fake.sent(CHAT)] == [f"Customer: {customer}"]


def test_the_html_parser_answers_telegrams_reasons() -> None:
    cases = {
        "x <b": "Unclosed start tag at byte offset 2",
        "<b>x": 'Can\'t find end tag corresponding to start tag "b"',
        "x</b>": "Unexpected end tag at byte offset 1",
        "<b>x</i>": 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"',
        "<br>": 'Unsupported start tag "br" at byte offset 0',
        "<span>x</span>": 'Tag "span" must have class "tg-spoiler" at byte offset 0',
        "🏟 🏟&lt;<i    aba>": 'Expected equal sign in declaration of an attribute of the tag "i" at byte offset 13',
    }
    for text, reason in cases.items():
        with pytest.raises(HtmlParseError) as caught:
            parse_html(text)
        assert str(caught.value) == reason, text
    # Like Telegram: an & that starts no entity is kept; entities decode with or without ';'.
    assert parse_html("Tom & Jerry &laquo; &lt &#62;")[0] == "Tom & Jerry &laquo; < >"
    with pytest.raises(HtmlParseError, match="fake: unescaped"):
        parse_html("Tom & Jerry", strict_ampersand=True)
    text, entities = parse_html('<a href="https://t.me/x">🏟 link</a>')
    assert text == "🏟 link"
    assert entities == [{"type": "text_link", "offset": 0, "length": 7, "url": "https://t.me/x"}]


async def test_a_scripted_429_raises_retry_after(bot: Bot, fake: FakeTelegram) -> None:
    fake.add_chat(CHAT)
    fake.fail_next(1, retry_after=3, chat_id=CHAT)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(CHAT, "hello")
    assert caught.value.retry_after == 3
    assert "Too Many Requests: retry after 3" in caught.value.message
    assert (await bot.send_message(CHAT, "hello")).text == "hello"
    assert [(c.method, c.status) for c in fake.calls("sendMessage")] == [("sendMessage", 429), ("sendMessage", 200)]


async def test_sending_fast_to_one_chat_hits_the_rate_limit(bot: Bot, fake: FakeTelegram) -> None:
    fake.add_chat(CHAT)
    for n in range(5):
        await bot.send_message(CHAT, f"burst {n}")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(CHAT, "one too many")
    assert caught.value.retry_after >= 1
    fake.set_rate_limits(False)
    await bot.send_message(CHAT, "limits off")


async def test_a_blocked_chat_is_forbidden(bot: Bot, fake: FakeTelegram) -> None:
    fake.add_chat(CHAT)
    update = fake.block(CHAT)
    assert update["my_chat_member"]["new_chat_member"]["status"] == "kicked"
    with pytest.raises(TelegramForbiddenError, match="Forbidden: bot was blocked by the user"):
        await bot.send_message(CHAT, "are you there?")
    fake.unblock(CHAT)
    await bot.send_message(CHAT, "welcome back")


async def test_unknown_chat_and_token_are_refused(server: TelegramFakeServer, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="Bad Request: chat not found"):
        await bot.send_message(999, "who?")
    session = AiohttpSession(api=TelegramAPIServer.from_base(server.url))
    async with Bot("999:not-the-token", session=session) as stranger:
        with pytest.raises(TelegramUnauthorizedError):
            await stranger.get_me()
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{server.url}/botnot-a-token/getMe")
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


async def test_updates_fed_while_polling_arrive_once(bot: Bot, fake: FakeTelegram) -> None:
    assert await bot.get_updates(timeout=0) == []
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    fake.user_sends(CHAT, "/start ABC")
    first = await asyncio.wait_for(poll, 2)
    assert [u.message.text for u in first if u.message] == ["/start ABC"]
    fake.user_sends(CHAT, "how much is it?")
    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [first[0].update_id, first[0].update_id + 1]  # not confirmed yet
    rest = await bot.get_updates(offset=first[0].update_id + 1, timeout=0)
    assert [u.message.text for u in rest if u.message] == ["how much is it?"]
    assert await bot.get_updates(offset=rest[-1].update_id + 1, timeout=0) == []
    assert fake.pending_updates() == []


async def test_the_dispatcher_polls_the_fake(bot: Bot, fake: FakeTelegram) -> None:
    dp = Dispatcher()
    got: asyncio.Queue[str] = asyncio.Queue()

    @dp.message(CommandStart(deep_link=True))
    async def start(message: Message, command: CommandObject) -> None:
        await message.answer(f"Linked with code {command.args}")
        await got.put(command.args or "")

    fake.user_sends(CHAT, "/start CODE7")
    polling = asyncio.create_task(
        dp.start_polling(bot, polling_timeout=1, handle_signals=False, close_bot_session=False)
    )
    try:
        assert await asyncio.wait_for(got.get(), 3) == "CODE7"
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 3)
    assert [s.text for s in fake.sent(CHAT)] == ["Linked with code CODE7"]


async def test_a_webhook_gets_updates_with_the_secret_and_blocks_get_updates(bot: Bot, fake: FakeTelegram) -> None:
    dp = Dispatcher()
    pressed: asyncio.Queue[tuple[str, str | None]] = asyncio.Queue()
    secrets: list[str | None] = []

    @dp.callback_query(F.data.startswith("take:"))
    async def take(query: CallbackQuery) -> None:
        await query.answer("Taken")
        await pressed.put((query.data or "", query.message.text if query.message else None))  # type: ignore[union-attr]

    async def receive(request: web.Request) -> web.Response:
        secrets.append(request.headers.get("X-Telegram-Bot-Api-Secret-Token"))
        await dp.feed_webhook_update(bot, await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/tg", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        assert await bot.set_webhook(f"http://127.0.0.1:{port}/tg", secret_token="s3cret")
        info = await bot.get_webhook_info()
        assert info.url.endswith("/tg")
        with pytest.raises(TelegramConflictError, match="can't use getUpdates method while webhook is active"):
            await bot.get_updates()

        fake.user_sends(CHAT, "hi")
        sent = await bot.send_message(CHAT, "Lead #17", reply_markup=keyboard())
        update = fake.press_button(CHAT, "take:17")
        assert update["callback_query"]["message"]["message_id"] == sent.message_id
        assert await asyncio.wait_for(pressed.get(), 3) == ("take:17", "Lead #17")
        assert secrets
        assert set(secrets) == {"s3cret"}
        assert [a["text"] for a in fake.callback_answers()] == ["Taken"]
        assert all(d.status == 200 for d in fake.deliveries())
        with pytest.raises(TelegramBadRequest, match="query is too old"):
            await bot.answer_callback_query(update["callback_query"]["id"])
        assert await bot.delete_webhook()
        assert await bot.get_updates(timeout=0) == []
    finally:
        await runner.cleanup()


async def test_a_failing_webhook_is_retried_then_recorded(bot: Bot, fake: FakeTelegram) -> None:
    fake.webhook_retry_delays = (0.05, 0.05)
    statuses = [500, 200]

    async def receive(request: web.Request) -> web.Response:
        return web.Response(status=statuses.pop(0) if statuses else 200)

    app = web.Application()
    app.router.add_post("/tg", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await bot.set_webhook(f"http://127.0.0.1:{port}/tg")
        update = fake.user_sends(CHAT, "hello")
        for _ in range(100):
            if any(d.status == 200 for d in fake.deliveries()):
                break
            await asyncio.sleep(0.02)
        assert [(d.update_id, d.attempt, d.status) for d in fake.deliveries()] == [
            (update["update_id"], 1, 500),
            (update["update_id"], 2, 200),
        ]
        info = await bot.get_webhook_info()
        assert info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"
        assert info.pending_update_count == 0
    finally:
        await bot.delete_webhook()
        fake.webhook_retry_delays = (0.1, 0.3, 1.0)
        await runner.cleanup()


async def test_commands_and_control_endpoints(server: TelegramFakeServer, bot: Bot, fake: FakeTelegram) -> None:
    from aiogram.types import BotCommand

    assert await bot.set_my_commands([BotCommand(command="start", description="Link this chat")])
    assert [c.command for c in await bot.get_my_commands()] == ["start"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Command", description="x")])
    async with httpx.AsyncClient(base_url=server.url) as client:
        update = (await client.post(f"/_fake/chats/{CHAT}/messages", json={"text": "/start Z"})).json()
        assert update["message"]["text"] == "/start Z"
        await bot.send_message(CHAT, "ok")
        sent = (await client.get("/_fake/sent", params={"chat_id": CHAT})).json()
        assert [m["text"] for m in sent] == ["ok"]
        await client.post("/_fake/faults", json={"count": 1, "retry_after": 7})
        with pytest.raises(TelegramRetryAfter) as caught:
            await bot.send_message(CHAT, "again")
        assert caught.value.retry_after == 7
        calls = (await client.get("/_fake/calls", params={"method": "sendMessage"})).json()
        assert [c["status"] for c in calls] == [200, 429]
        assert (await client.post(f"/_fake/chats/{CHAT}/press", json={"data": "nope"})).status_code == 404
        assert (await client.post("/_fake/reset")).json() == {"ok": True}
    assert fake.sent() == []
