"""A fake of the Telegram Bot API that speaks its wire format, for the sandbox and the tests.

The real aiogram 3 client talks to it unchanged:
``Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(<the fake's url>)))``.

What the client sends and what the fake answers:

* ``POST`` (or ``GET``) ``/bot{token}/{method}``, the method name case-insensitive, the
  parameters in the query string, an urlencoded or multipart form, or a JSON body. aiogram
  sends an urlencoded form (multipart when a file is attached): strings as they are, numbers
  and booleans JSON-encoded (``"123"``, ``"true"``), nested objects (``reply_markup``,
  ``allowed_updates``, ``commands``) as JSON text, and it leaves out parameters that are
  None, so the fake decodes each parameter by what it expects.
* Answers are Telegram's: ``{"ok": true, "result": ...}`` (some with a ``description``, such
  as "Webhook was set"), errors ``{"ok": false, "error_code": N, "description": "..."}`` with
  the same HTTP status, a 429 adding ``"parameters": {"retry_after": N}``. aiogram maps them
  by status: 400 ``TelegramBadRequest``, 401 ``TelegramUnauthorizedError``, 403
  ``TelegramForbiddenError``, 404 ``TelegramNotFound``, 409 ``TelegramConflictError``, and any
  ``retry_after`` ``TelegramRetryAfter`` (aiogram does not retry by itself).
* A token that is not ``<digits>:<letters, digits, _ or ->`` is 404 "Not Found", like
  Telegram; a well-formed token outside :attr:`FakeTelegram.tokens` (when that set is given)
  is 401 "Unauthorized". Every accepted token drives the same simulated bot, whose id is
  the token's number (``getMe``: ``is_bot``, ``first_name``, ``username`` from
  :attr:`FakeTelegram.bot_username`, the ``can_*``/``supports_*`` flags). An unknown method is
  404 "Not Found".

Methods:

* ``getMe``; ``setMyCommands`` (``commands``: 1-100 of ``{command, description}``, a command
  1-32 of ``a-z0-9_``, else 400 "Bad Request: BOT_COMMAND_INVALID"), ``getMyCommands``,
  ``deleteMyCommands`` (the ``scope``/``language_code`` are recorded, not separated).
* ``sendMessage`` (``chat_id``, ``text``, ``parse_mode``, ``reply_markup``, the other options
  recorded): the answer is a Message (``message_id`` counting per chat, ``from`` the bot,
  ``chat`` ``{id, type: "private", first_name, username}``, ``date``, ``text`` as the user sees
  it, ``entities``, and the inline keyboard). A chat that never wrote to the bot (see below;
  :meth:`FakeTelegram.add_chat` registers one) is 400 "Bad Request: chat not found", unless
  ``require_known_chats`` is off. An empty text is "Bad Request: message text is empty",
  over 4096 UTF-16 units "Bad Request: message is too long". ``parse_mode`` ``HTML`` is parsed
  as Telegram's server does (:func:`parse_html`): tags ``b strong i em u ins s strike del a
  code pre blockquote tg-spoiler tg-emoji span class="tg-spoiler"``; the entities ``&lt;
  &gt; &amp; &quot;`` and ``&#N;``/``&#xH;`` (the ``;`` optional). An unknown tag (``a < b``
  reads as the tag ``""``), an unclosed, unmatched or stray end tag, or a broken attribute
  is 400 "Bad Request: can't parse entities: <Telegram's sentence, with the byte offset>",
  e.g. ``Unsupported start tag "b" at byte offset 2`` or ``Can't find end tag corresponding to
  start tag "b"``: a sender that forgets ``html.escape`` on customer text fails here. Like
  Telegram, an ``&`` that starts no entity (``Tom & Jerry``, ``&laquo;``) is kept as it is;
  ``strict_html=True`` refuses it too, with "Bad Request: can't parse entities: fake: ..."
  (the fake's own check, stricter than Telegram). ``Markdown``/``MarkdownV2`` are accepted
  unparsed; another mode is "Bad Request: unsupported parse_mode". ``reply_markup`` must be
  JSON ("Bad Request: can't parse reply keyboard markup JSON object"); an inline keyboard
  needs an array of arrays of buttons with ``text`` and ``callback_data`` of 1-64 bytes
  ("Bad Request: BUTTON_DATA_INVALID") or another action.
* ``editMessageText`` and ``editMessageReplyMarkup`` (``chat_id`` + ``message_id``): the edited
  Message; a message the bot did not send is "Bad Request: message to edit not found", the
  same content "Bad Request: message is not modified: specified new message content and
  reply markup are exactly the same as a current content and reply markup of the message".
  ``deleteMessage``: true, or "Bad Request: message to delete not found".
* ``answerCallbackQuery`` (``callback_query_id``, ``text``, ``show_alert``...): true once per
  query fed by :meth:`FakeTelegram.press_button`; an unknown or already answered id is
  "Bad Request: query is too old and response timeout expired or query ID is invalid".
* ``setWebhook`` (``url``, ``secret_token`` of 1-256 ``A-Za-z0-9_-``, ``allowed_updates``,
  ``drop_pending_updates``; unlike Telegram, ``http://`` URLs are allowed so a test can
  receive on loopback), ``deleteWebhook`` (``drop_pending_updates``), ``getWebhookInfo``
  (``url``, ``has_custom_certificate``, ``pending_update_count``, ``allowed_updates``,
  ``last_error_date``/``last_error_message`` after a failed delivery).
* ``getUpdates`` (``offset``, ``limit`` 1-100, ``timeout``, ``allowed_updates``): updates with
  an id below ``offset`` are confirmed and forgotten (a negative offset keeps only the last
  ``-offset``), the unconfirmed ones are answered oldest first (again until confirmed);
  with none, the request is held up to ``timeout`` seconds (at most
  :attr:`FakeTelegram.max_poll_seconds`), answering as soon as one arrives. ``allowed_updates``
  persists across calls, like Telegram's. While a webhook is set it is 409 "Conflict: can't
  use getUpdates method while webhook is active; use deleteWebhook to delete the webhook
  first"; a held request overtaken by a newer one is 409 "Conflict: terminated by other
  getUpdates request; make sure that only one bot instance is running".

Every call to a chat the user blocked (:meth:`FakeTelegram.block`) is 403 "Forbidden: bot
was blocked by the user".

What users do (Python methods of :class:`FakeTelegram`, and ``POST /_fake/...``), each making
an ``Update`` with the next ``update_id``:

* :meth:`~FakeTelegram.user_sends` (``POST /_fake/chats/{chat_id}/messages`` ``{"text",
  "first_name"?, "username"?, "language_code"?}``): a private-chat ``message`` from the user
  whose id is the chat's; a leading ``/command`` gets a ``bot_command`` entity, so
  ``/start CODE`` is a deep link.
* :meth:`~FakeTelegram.press_button` (``POST /_fake/chats/{chat_id}/press`` ``{"data",
  "message_id"?}``): a ``callback_query`` (``id``, ``from``, ``message`` as it is now,
  ``chat_instance``, ``data``) for a button of a message the bot sent (the newest one having
  a button with that data when no ``message_id`` is given); no such button is a
  ``ValueError`` (HTTP 404).
* :meth:`~FakeTelegram.block` / :meth:`~FakeTelegram.unblock` (``POST|DELETE
  /_fake/chats/{chat_id}/block``): a ``my_chat_member`` update (the bot ``member`` ->
  ``kicked``, and back), as Telegram sends.

With a webhook set, a background thread POSTs each update as JSON to its URL (header
``X-Telegram-Bot-Api-Secret-Token`` when a secret is set), in order, one at a time; a
non-2xx answer or a connection error is retried after :attr:`FakeTelegram.webhook_retry_delays`
(then the update is dropped and ``last_error_message`` set; Telegram keeps trying for
longer). An answer whose JSON body names a ``method`` is executed, as Telegram does with
a reply in the webhook response (aiogram's ``handle_in_background=False``). Without a
webhook, updates wait for ``getUpdates``.

Faults and limits:

* :meth:`FakeTelegram.fail_next` (``POST /_fake/faults`` ``{"count", "retry_after",
  "chat_id"?, "method"?}``, ``GET``/``DELETE`` too): the next ``count`` calls of ``method``
  (default ``sendMessage``), to ``chat_id`` or to any chat, answer 429 "Too Many Requests:
  retry after R" with ``parameters.retry_after`` R; queued in order, consumed when matched.
* Rate limits like Telegram's (``POST /_fake/rate_limits`` ``{"enabled", "per_chat_per_second",
  "per_chat_burst", "global_per_second", "global_burst"}``, :meth:`FakeTelegram.set_rate_limits`):
  ``sendMessage`` and edits draw from a bucket per chat (1/s, a burst of 5) and one for the
  bot (30/s, a burst of 30); an empty bucket is a 429 whose ``retry_after`` is the whole
  seconds until it refills. On by default.

Record and control (``/_fake/``): ``GET sent`` (``?chat_id=``: every sendMessage that
succeeded: chat, message_id, text as sent, text as shown, parse_mode, reply_markup,
entities, time), ``GET calls`` (every Bot API request: method, parameters, status,
description), ``GET updates`` (every update made, with how it was delivered), ``GET
webhook`` (the webhook and its deliveries), ``GET chats/{chat_id}/messages`` (the chat as
it stands), ``POST reset`` (everything but the configuration). Python: :meth:`~FakeTelegram.sent`,
:meth:`~FakeTelegram.calls`, :meth:`~FakeTelegram.updates`, :meth:`~FakeTelegram.deliveries`,
:meth:`~FakeTelegram.messages`, :meth:`~FakeTelegram.reset`.

:class:`TelegramFakeServer` runs the app with uvicorn on a loopback port in a background
thread, for tests (``with`` and ``async with``); ``jggl-telegram-fake`` serves it
(``--host 127.0.0.1 --port 8093``, ``--token T`` repeatable, ``--no-rate-limits``,
``--any-chat`` to lift ``require_known_chats``, ``--strict-html``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import email.parser
import email.policy
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import httpx
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .serving import ServedApp

__all__ = [
    "HTML_TAGS",
    "FakeTelegram",
    "HtmlParseError",
    "RateLimits",
    "RecordedCall",
    "SentMessage",
    "TelegramApiError",
    "TelegramFakeServer",
    "WebhookDelivery",
    "create_app",
    "main",
    "parse_html",
]

_T = TypeVar("_T")

TOKEN_RE = re.compile(r"^(\d+):[A-Za-z0-9_-]+$")
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
MAX_TEXT_UTF16 = 4096

HTML_TAGS = frozenset(
    {
        "a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins",
        "tg-spoiler", "tg-emoji", "span", "pre", "code", "blockquote",
    }
)  # fmt: skip
"""The tags Telegram's HTML parse mode knows."""

_ENTITY_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "tg-spoiler": "spoiler",
    "span": "spoiler", "code": "code", "pre": "pre", "blockquote": "blockquote", "a": "text_link",
    "tg-emoji": "custom_emoji",
}  # fmt: skip

_SPACE = frozenset(b" \t\r\n\v\x00")
_NAME_TOKEN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
_NAMED_ENTITIES = {b"lt": 0x3C, b"gt": 0x3E, b"amp": 0x26, b"quot": 0x22}
DEFAULT_UPDATE_TYPES = ("message", "edited_message", "callback_query", "my_chat_member")


# ---------------------------------------------------------------------------- HTML


class HtmlParseError(ValueError):
    """Telegram's "can't parse entities" reason (the text after that prefix)."""


def _copy(value: _T) -> _T:
    """A deep copy of JSON-like data."""
    copied: _T = json.loads(json.dumps(value))
    return copied


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _decode_entity(b: bytes, pos: int) -> tuple[int, int]:
    """The code point of the entity at ``b[pos]`` (an ``&``) and where it ends; (0, pos) when none."""
    n = len(b)
    end = pos + 1
    value = 0
    if end < n and b[end] == 0x23:  # '#'
        end += 1
        if end < n and b[end] == 0x78:  # 'x'
            end += 1
            while end < n and chr(b[end]) in "0123456789abcdefABCDEF":
                value = value * 16 + int(chr(b[end]), 16)
                end += 1
        else:
            while end < n and 0x30 <= b[end] <= 0x39:
                value = value * 10 + b[end] - 0x30
                end += 1
        if value == 0 or value >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while end < n and chr(b[end]).isascii() and chr(b[end]).isalpha():
            end += 1
        value = _NAMED_ENTITIES.get(b[pos + 1 : end], 0)
        if value == 0:
            return 0, pos
    if end < n and b[end] == 0x3B:  # ';'
        end += 1
    return value, end


def parse_html(text: str, *, strict_ampersand: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """The text Telegram shows for ``text`` sent with ``parse_mode=HTML``, and its entities.

    Raises :class:`HtmlParseError` with Telegram's reason (byte offsets into the UTF-8 text)
    where Telegram answers "Bad Request: can't parse entities: ...".
    """
    b = text.encode("utf-8")
    n = len(b)

    def at(i: int) -> int:
        return b[i] if i < n else 0

    out: list[str] = []
    utf16 = 0
    stack: list[tuple[str, dict[str, str], int]] = []
    entities: list[dict[str, Any]] = []
    i = 0
    while i < n:
        c = b[i]
        if c == 0x26:
            code, end = _decode_entity(b, i)
            if code:
                if 0xD800 <= code <= 0xDFFF:
                    raise HtmlParseError(
                        "Text contains invalid Unicode characters after decoding HTML entities, "
                        "check for unmatched surrogate code units"
                    )
                out.append(chr(code))
                utf16 += 2 if code > 0xFFFF else 1
                i = end
                continue
            if strict_ampersand:
                raise HtmlParseError(
                    f'fake: unescaped "&" at byte offset {i} (Telegram would show it as is; write &amp;)'
                )
        if c != 0x3C:
            # Copy one UTF-8 character.
            j = i + 1
            while j < n and b[j] & 0xC0 == 0x80:
                j += 1
            char = b[i:j].decode("utf-8", "replace")
            out.append(char)
            utf16 += _utf16_len(char)
            i = j
            continue
        begin = i
        i += 1
        if at(i) != 0x2F:  # a start tag
            while at(i) not in _SPACE and at(i) != 0x3E:
                i += 1
            if at(i) == 0:
                raise HtmlParseError(f"Unclosed start tag at byte offset {begin}")
            tag = b[begin + 1 : i].decode("utf-8", "replace").lower()
            if tag not in HTML_TAGS:
                raise HtmlParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
            attrs: dict[str, str] = {}
            while at(i) != 0x3E:
                while at(i) != 0 and at(i) in _SPACE:
                    i += 1
                if at(i) == 0x3E:
                    break
                if at(i) == 0:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {begin}")
                name_begin = i
                while at(i) not in _SPACE and at(i) not in (0x3D, 0x3E):
                    i += 1
                name = b[name_begin:i].decode("utf-8", "replace").lower()
                if not name:
                    raise HtmlParseError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
                while at(i) != 0 and at(i) in _SPACE:
                    i += 1
                if at(i) == 0:
                    raise HtmlParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if at(i) != 0x3D:
                    raise HtmlParseError(
                        f'Expected equal sign in declaration of an attribute of the tag "{tag}" at byte offset {begin}'
                    )
                i += 1
                while at(i) != 0 and at(i) in _SPACE:
                    i += 1
                if at(i) == 0:
                    raise HtmlParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if at(i) not in (0x22, 0x27):
                    token_begin = i
                    while at(i) in _NAME_TOKEN and i < n:
                        i += 1
                    if at(i) not in _SPACE and at(i) != 0x3E:
                        raise HtmlParseError(f"Unexpected end of name token at byte offset {token_begin}")
                    value = b[token_begin:i].decode("utf-8", "replace").lower()
                else:
                    quote = at(i)
                    i += 1
                    chars: list[str] = []
                    while i < n and b[i] != quote:
                        code, end = _decode_entity(b, i) if b[i] == 0x26 else (0, i)
                        if code:
                            chars.append(chr(code))
                            i = end
                        else:
                            j = i + 1
                            while j < n and b[j] & 0xC0 == 0x80:
                                j += 1
                            chars.append(b[i:j].decode("utf-8", "replace"))
                            i = j
                    if i < n:
                        i += 1
                    value = "".join(chars)
                attrs[name] = value
            if tag == "span" and attrs.get("class") != "tg-spoiler":
                raise HtmlParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
            stack.append((tag, attrs, utf16))
            i += 1
            continue
        # an end tag
        if not stack:
            raise HtmlParseError(f"Unexpected end tag at byte offset {begin}")
        i += 1
        name_begin = i
        while at(i) not in _SPACE and at(i) != 0x3E:
            i += 1
        end_tag = b[name_begin:i].decode("utf-8", "replace").lower()
        while at(i) != 0 and at(i) in _SPACE:
            i += 1
        if at(i) != 0x3E:
            raise HtmlParseError(f"Unclosed end tag at byte offset {begin}")
        tag, attrs, offset = stack.pop()
        if end_tag and end_tag != tag:
            raise HtmlParseError(f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", found "</{end_tag}>"')
        i += 1
        length = utf16 - offset
        if length <= 0:
            continue
        entity: dict[str, Any] = {"type": _ENTITY_TYPES[tag], "offset": offset, "length": length}
        if tag == "a":
            if not attrs.get("href"):
                continue
            entity["url"] = attrs["href"]
        elif tag == "tg-emoji":
            if not attrs.get("emoji-id"):
                continue
            entity["custom_emoji_id"] = attrs["emoji-id"]
        elif tag == "blockquote" and "expandable" in attrs:
            entity["type"] = "expandable_blockquote"
        elif tag == "code" and attrs.get("class", "").startswith("language-"):
            entity["language"] = attrs["class"].removeprefix("language-")
        entities.append(entity)
    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


# ---------------------------------------------------------------------------- records


class TelegramApiError(Exception):
    """A Bot API error answer: ``error_code``, ``description`` and, for a 429, ``retry_after``."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad(description: str) -> TelegramApiError:
    return TelegramApiError(400, f"Bad Request: {description}")


def _too_many(retry_after: int) -> TelegramApiError:
    return TelegramApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)


def _first_update_id() -> int:
    """Where a fake bot's update ids start: a large random number, as Telegram's look, so
    a restarted fake never repeats an id that ingest (whose dedupe window outlives the
    fake) has seen and would drop as a repeat."""
    return secrets.randbelow(900_000_000) + 100_000_000


@dataclass
class SentMessage:
    """A message the bot sent (sendMessage that succeeded)."""

    at: float
    chat_id: int
    message_id: int
    text: str
    """As the client sent it (HTML and all)."""
    plain_text: str
    """As the user sees it (entities parsed out)."""
    parse_mode: str | None
    reply_markup: dict[str, Any] | None
    entities: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RecordedCall:
    """A Bot API request the fake received, and how it answered."""

    at: float
    method: str
    params: dict[str, Any]
    status: int | None = None
    description: str | None = None
    via: str = "http"
    """``http``, or ``webhook_reply`` for a method given in a webhook's answer."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WebhookDelivery:
    """One POST of an update to the webhook."""

    at: float
    update_id: int
    url: str
    attempt: int
    status: int | None
    error: str | None = None


@dataclass
class RateLimits:
    """Telegram-like limits on sendMessage and edits: a token bucket per chat and one for the bot."""

    enabled: bool = True
    per_chat_per_second: float = 1.0
    per_chat_burst: int = 5
    global_per_second: float = 30.0
    global_burst: int = 30


@dataclass
class _Fault:
    remaining: int
    retry_after: int
    chat_id: int | None
    method: str


@dataclass
class _Chat:
    id: int
    first_name: str
    username: str | None
    language_code: str | None = None
    blocked: bool = False
    next_message_id: int = 1
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    bot_messages: set[int] = field(default_factory=set)

    def as_chat(self) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.username:
            chat["username"] = self.username
        return chat

    def as_user(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user


# ---------------------------------------------------------------------------- parameters


def _as_int(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad(f'field "{name}" must be of type Integer') from None


def _as_bool(params: dict[str, Any], name: str) -> bool:
    value = params.get(name)
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


def _as_json(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if isinstance(value, str):
        return json.loads(value)
    return value


def _bucket_take(buckets: dict[Any, tuple[float, float]], key: Any, rate: float, burst: int, now: float) -> int:
    """Take a token from ``buckets[key]``; 0 when taken, else the whole seconds until one is there."""
    tokens, last = buckets.get(key, (float(burst), now))
    tokens = min(float(burst), tokens + (now - last) * rate)
    if tokens >= 1.0:
        buckets[key] = (tokens - 1.0, now)
        return 0
    buckets[key] = (tokens, now)
    return max(1, math.ceil((1.0 - tokens) / rate))


# ---------------------------------------------------------------------------- state


@dataclass
class FakeTelegram:
    """The simulated bot and its users: configuration, chats, updates, faults and the record. Thread-safe."""

    tokens: set[str] | None = None
    """Tokens accepted; None accepts any well-formed token."""
    bot_username: str = "jggl_sandbox_bot"
    bot_first_name: str = "JGGL Sandbox"
    require_known_chats: bool = True
    """Sending to a chat that never wrote to the bot is "chat not found", as on Telegram."""
    strict_html: bool = False
    """Also refuse an ``&`` that starts no entity (Telegram keeps it as it is)."""
    rate_limits: RateLimits = field(default_factory=RateLimits)
    max_poll_seconds: float = 50.0
    """The longest a getUpdates request is held."""
    webhook_retry_delays: tuple[float, ...] = (0.1, 0.3, 1.0)
    """Pauses before the 2nd, 3rd... delivery attempt of an update; one attempt more than pauses."""
    webhook_timeout: float = 10.0
    max_records: int = 10_000

    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _cond: threading.Condition = field(init=False, repr=False)
    _chats: dict[int, _Chat] = field(default_factory=dict, repr=False)
    _pending: collections.deque[dict[str, Any]] = field(default_factory=collections.deque, repr=False)
    _all_updates: collections.deque[dict[str, Any]] = field(default_factory=collections.deque, repr=False)
    _next_update_id: int = field(default_factory=_first_update_id, repr=False)
    _sent: collections.deque[SentMessage] = field(default_factory=collections.deque, repr=False)
    _calls: collections.deque[RecordedCall] = field(default_factory=collections.deque, repr=False)
    _deliveries: collections.deque[WebhookDelivery] = field(default_factory=collections.deque, repr=False)
    _faults: list[_Fault] = field(default_factory=list, repr=False)
    _buckets: dict[Any, tuple[float, float]] = field(default_factory=dict, repr=False)
    _callbacks: dict[str, bool] = field(default_factory=dict, repr=False)
    """Callback query id -> answered."""
    _answers: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _commands: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _allowed_updates: list[str] | None = None
    _webhook: dict[str, Any] | None = None
    _webhook_error: tuple[int, str] | None = None
    _poll_generation: int = 0
    _version: int = 0
    """Bumped whenever something a held getUpdates waits for changes."""
    _stopping: bool = False
    _last_token: str | None = None
    _deliverer: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._cond = threading.Condition(self._lock)

    # ------------------------------------------------------------------ users

    def add_chat(
        self, chat_id: int, first_name: str = "Customer", username: str | None = None, language_code: str | None = None
    ) -> None:
        """Make ``chat_id`` a private chat the bot may write to (as if the user had pressed Start)."""
        with self._lock:
            self._chat(chat_id, first_name, username, language_code)

    def user_sends(
        self,
        chat_id: int,
        text: str,
        *,
        first_name: str = "Customer",
        username: str | None = None,
        language_code: str | None = None,
    ) -> dict[str, Any]:
        """The user of ``chat_id`` types ``text`` to the bot; returns the ``message`` Update."""
        with self._lock:
            chat = self._chat(chat_id, first_name, username, language_code)
            message: dict[str, Any] = {
                "message_id": self._message_id(chat),
                "from": chat.as_user(),
                "chat": chat.as_chat(),
                "date": int(time.time()),
                "text": text,
            }
            if match := re.match(r"^/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text):
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": _utf16_len(match.group(0))}]
            chat.messages[message["message_id"]] = message
            return self._push({"message": message})

    def press_button(self, chat_id: int, data: str, message_id: int | None = None) -> dict[str, Any]:
        """The user presses the inline button with ``data`` under a message the bot sent; returns the Update.

        Without ``message_id``, the newest bot message having such a button. ``ValueError`` when
        there is no such button.
        """
        with self._lock:
            chat = self._chats.get(chat_id)
            if chat is None:
                raise ValueError(f"chat {chat_id} does not exist")
            candidates = [message_id] if message_id is not None else sorted(chat.bot_messages, reverse=True)
            for mid in candidates:
                message = chat.messages.get(mid) if mid in chat.bot_messages else None
                if message is not None and data in _callback_datas(message.get("reply_markup")):
                    break
            else:
                raise ValueError(f"no message of the bot in chat {chat_id} has a button with data {data!r}")
            query_id = str(secrets.randbits(63))
            self._callbacks[query_id] = False
            query = {
                "id": query_id,
                "from": chat.as_user(),
                "message": _copy(message),
                "chat_instance": str((chat_id * 2654435761 + 97) % 10**18),
                "data": data,
            }
            return self._push({"callback_query": query})

    def block(self, chat_id: int) -> dict[str, Any]:
        """The user blocks the bot: every call to the chat is 403 from now on; returns the my_chat_member Update."""
        return self._set_blocked(chat_id, True)

    def unblock(self, chat_id: int) -> dict[str, Any]:
        """The user unblocks the bot; returns the my_chat_member Update."""
        return self._set_blocked(chat_id, False)

    def _set_blocked(self, chat_id: int, blocked: bool) -> dict[str, Any]:
        with self._lock:
            chat = self._chat(chat_id)
            chat.blocked = blocked
            bot = self._bot_user()
            member = {"user": bot, "status": "member"}
            kicked = {"user": bot, "status": "kicked", "until_date": 0}
            return self._push(
                {
                    "my_chat_member": {
                        "chat": chat.as_chat(),
                        "from": chat.as_user(),
                        "date": int(time.time()),
                        "old_chat_member": member if blocked else kicked,
                        "new_chat_member": kicked if blocked else member,
                    }
                }
            )

    # ------------------------------------------------------------------ faults and limits

    def fail_next(
        self, count: int = 1, *, retry_after: int = 3, chat_id: int | None = None, method: str = "sendMessage"
    ) -> None:
        """The next ``count`` calls of ``method`` (to ``chat_id``, or any chat) answer 429 with ``retry_after``."""
        if count < 1:
            raise ValueError("count is a positive number")
        with self._lock:
            self._faults.append(_Fault(count, retry_after, chat_id, _canonical(method)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def set_rate_limits(self, enabled: bool = True, **limits: float) -> None:
        """Switch the rate limits on or off, optionally changing them (the :class:`RateLimits` fields)."""
        with self._lock:
            self.rate_limits = RateLimits(**{**asdict(self.rate_limits), **limits, "enabled": enabled})
            self._buckets.clear()

    # ------------------------------------------------------------------ record

    def sent(self, chat_id: int | None = None) -> list[SentMessage]:
        """The messages the bot sent, oldest first (to ``chat_id`` only, when given)."""
        with self._lock:
            return [m for m in self._sent if chat_id is None or m.chat_id == chat_id]

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        """Every Bot API request, oldest first (of ``method`` only, when given)."""
        with self._lock:
            wanted = _canonical(method) if method else None
            return [c for c in self._calls if wanted is None or c.method == wanted]

    def updates(self) -> list[dict[str, Any]]:
        """Every update made, oldest first (also those already delivered)."""
        with self._lock:
            return _copy(list(self._all_updates))

    def pending_updates(self) -> list[dict[str, Any]]:
        """The updates not yet confirmed (getUpdates) or delivered (webhook)."""
        with self._lock:
            return _copy(list(self._pending))

    def deliveries(self) -> list[WebhookDelivery]:
        """Every webhook POST, oldest first."""
        with self._lock:
            return list(self._deliveries)

    def callback_answers(self) -> list[dict[str, Any]]:
        """The answerCallbackQuery calls that succeeded (their parameters)."""
        with self._lock:
            return list(self._answers)

    def messages(self, chat_id: int) -> list[dict[str, Any]]:
        """The chat as it stands: the user's and the bot's messages (edits applied, deletions gone)."""
        with self._lock:
            chat = self._chats.get(chat_id)
            return [] if chat is None else _copy([chat.messages[k] for k in sorted(chat.messages)])

    @property
    def webhook(self) -> dict[str, Any] | None:
        """The webhook set (``url``, ``secret_token``...), or None."""
        with self._lock:
            return dict(self._webhook) if self._webhook else None

    def reset(self) -> None:
        """Forget chats, updates, webhook, commands, faults and the record (the configuration stays)."""
        with self._cond:
            self._chats.clear()
            self._pending.clear()
            self._all_updates.clear()
            self._next_update_id = _first_update_id()
            self._sent.clear()
            self._calls.clear()
            self._deliveries.clear()
            self._faults.clear()
            self._buckets.clear()
            self._callbacks.clear()
            self._answers.clear()
            self._commands.clear()
            self._allowed_updates = None
            self._webhook = None
            self._webhook_error = None
            self._poll_generation += 1
            self._version += 1
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the webhook delivery thread (and end held getUpdates requests)."""
        with self._cond:
            self._stopping = True
            self._version += 1
            self._cond.notify_all()
            deliverer, self._deliverer = self._deliverer, None
        if deliverer is not None and deliverer is not threading.current_thread():
            deliverer.join(5)

    # ------------------------------------------------------------------ internals

    def _chat(
        self,
        chat_id: int,
        first_name: str = "Customer",
        username: str | None = None,
        language_code: str | None = None,
    ) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._chats[chat_id] = _Chat(chat_id, first_name, username, language_code)
        return chat

    @staticmethod
    def _message_id(chat: _Chat) -> int:
        mid = chat.next_message_id
        chat.next_message_id += 1
        return mid

    def _bot_user(self, token: str | None = None) -> dict[str, Any]:
        bot_id = 1
        if token and (match := TOKEN_RE.match(token)):
            bot_id = int(match.group(1))
        elif self.tokens:
            bot_id = int(sorted(self.tokens)[0].split(":", 1)[0])
        elif self._last_token:
            bot_id = int(self._last_token.split(":", 1)[0])
        return {"id": bot_id, "is_bot": True, "first_name": self.bot_first_name, "username": self.bot_username}

    def _push(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            update = {"update_id": self._next_update_id, **payload}
            self._next_update_id += 1
            self._all_updates.append(update)
            while len(self._all_updates) > self.max_records:
                self._all_updates.popleft()
            kind = next(iter(payload))
            allowed = self._allowed()
            if kind in allowed:
                self._pending.append(update)
            self._version += 1
            self._cond.notify_all()
            return _copy(update)

    def _allowed(self) -> set[str]:
        if self._webhook is not None and self._webhook.get("allowed_updates"):
            return set(self._webhook["allowed_updates"])
        if self._allowed_updates:
            return set(self._allowed_updates)
        return set(DEFAULT_UPDATE_TYPES)

    def _record(self, call: RecordedCall) -> None:
        with self._lock:
            self._calls.append(call)
            while len(self._calls) > self.max_records:
                self._calls.popleft()

    def _next_fault(self, method: str, chat_id: int | None) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method and (fault.chat_id is None or fault.chat_id == chat_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # ------------------------------------------------------------------ the Bot API

    def check_token(self, token: str) -> None:
        """Raise the Bot API error for a malformed (404) or unknown (401) token."""
        if not TOKEN_RE.match(token):
            raise TelegramApiError(404, "Not Found")
        if self.tokens is not None and token not in self.tokens:
            raise TelegramApiError(401, "Unauthorized")
        self._last_token = token

    def call(self, token: str, method: str, params: dict[str, Any], *, via: str = "http") -> Any:
        """Execute a Bot API method (not the held part of getUpdates); the ``result``, or raises TelegramApiError."""
        return self._call(
            token, method, params, RecordedCall(at=time.time(), method=_canonical(method), params={}, via=via)
        )

    def _call(self, token: str, method: str, params: dict[str, Any], record: RecordedCall) -> Any:
        name = _canonical(method)
        record.params = dict(params)
        self._record(record)
        try:
            self.check_token(token)
            handler = _METHODS.get(name.lower())
            if handler is None:
                raise TelegramApiError(404, "Not Found")
            with self._lock:
                result = handler(self, token, params)
        except TelegramApiError as exc:
            record.status, record.description = exc.error_code, exc.description
            raise
        record.status = 200
        return result

    def _target_chat(self, params: dict[str, Any], method: str) -> _Chat:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise _bad("chat_id is empty")
        chat: _Chat | None = None
        if isinstance(raw, str) and raw.startswith("@"):
            chat = next((c for c in self._chats.values() if c.username == raw[1:]), None)
        else:
            try:
                chat_id = int(raw)
            except (TypeError, ValueError):
                raise _bad("chat not found") from None
            chat = self._chats.get(chat_id)
            if chat is None and not self.require_known_chats:
                chat = self._chat(chat_id)
        if chat is None:
            raise _bad("chat not found")
        if chat.blocked:
            raise TelegramApiError(403, "Forbidden: bot was blocked by the user")
        fault = self._next_fault(method, chat.id)
        if fault is not None:
            raise _too_many(fault.retry_after)
        return chat

    def _rate_limit(self, chat: _Chat) -> None:
        limits = self.rate_limits
        if not limits.enabled:
            return
        now = time.monotonic()
        wait = _bucket_take(self._buckets, ("chat", chat.id), limits.per_chat_per_second, limits.per_chat_burst, now)
        if wait:
            raise _too_many(wait)
        wait = _bucket_take(self._buckets, "bot", limits.global_per_second, limits.global_burst, now)
        if wait:
            raise _too_many(wait)

    def _render(self, params: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]], str | None]:
        """(text as sent, text as shown, entities, parse_mode) of a text parameter."""
        text = params.get("text")
        text = "" if text is None else str(text)
        parse_mode = params.get("parse_mode") or None
        entities: list[dict[str, Any]] = []
        plain = text
        if parse_mode is not None:
            mode = str(parse_mode).lower()
            if mode == "html":
                try:
                    plain, entities = parse_html(text, strict_ampersand=self.strict_html)
                except HtmlParseError as exc:
                    raise _bad(f"can't parse entities: {exc}") from None
            elif mode not in {"markdown", "markdownv2"}:
                raise _bad("unsupported parse_mode")
        elif params.get("entities"):
            try:
                entities = list(_as_json(params, "entities"))
            except ValueError:
                raise _bad("can't parse entities JSON object") from None
        if not plain.strip():
            raise _bad("message text is empty")
        if _utf16_len(plain) > MAX_TEXT_UTF16:
            raise _bad("message is too long")
        return text, plain, entities, parse_mode

    def _markup(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if params.get("reply_markup") in (None, ""):
            return None
        try:
            markup = _as_json(params, "reply_markup")
        except ValueError:
            raise _bad("can't parse reply keyboard markup JSON object") from None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
            for row in rows:
                for button in row:
                    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                        raise _bad('can\'t find field "text"')
                    if "callback_data" in button:
                        size = len(str(button["callback_data"]).encode("utf-8"))
                        if not 1 <= size <= 64:
                            raise _bad("BUTTON_DATA_INVALID")
                    elif not any(k in button for k in _BUTTON_ACTIONS):
                        raise _bad("BUTTON_TYPE_INVALID")
        return markup

    def _bot_message(self, token: str, chat: _Chat, message_id: int, text: str, entities: list[dict[str, Any]],
                     markup: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": self._bot_user(token),
            "chat": chat.as_chat(),
            "date": int(time.time()),
            "text": text,
        }
        if entities:
            message["entities"] = entities
        if markup and "inline_keyboard" in markup:
            message["reply_markup"] = {"inline_keyboard": markup["inline_keyboard"]}
        return message

    def _edited_message(self, params: dict[str, Any], method: str) -> tuple[_Chat, dict[str, Any]]:
        if params.get("inline_message_id"):
            raise _bad("message to edit not found")
        chat = self._target_chat(params, method)
        message_id = _as_int(params, "message_id")
        if message_id is None:
            raise _bad("message identifier is not specified")
        if message_id not in chat.bot_messages or message_id not in chat.messages:
            raise _bad("message to edit not found")
        return chat, chat.messages[message_id]

    # ------------------------------------------------------------------ webhook delivery

    def _ensure_deliverer(self) -> None:
        if self._deliverer is not None and self._deliverer.is_alive():
            return
        self._stopping = False
        self._deliverer = threading.Thread(target=self._deliver_loop, name="telegram-fake-webhook", daemon=True)
        self._deliverer.start()

    def _deliver_loop(self) -> None:
        with httpx.Client(timeout=self.webhook_timeout) as client:
            attempts: dict[int, int] = {}
            while True:
                with self._cond:
                    while not self._stopping and (self._webhook is None or not self._pending):
                        self._cond.wait(0.5)
                    if self._stopping:
                        return
                    assert self._webhook is not None
                    update = self._pending[0]
                    url, secret = self._webhook["url"], self._webhook["secret_token"]
                update_id = update["update_id"]
                attempt = attempts.get(update_id, 0) + 1
                attempts[update_id] = attempt
                headers = {"Content-Type": "application/json"}
                if secret:
                    headers["X-Telegram-Bot-Api-Secret-Token"] = secret
                status: int | None = None
                error: str | None = None
                reply: Any = None
                try:
                    response = client.post(url, content=json.dumps(update, ensure_ascii=False), headers=headers)
                    status = response.status_code
                    if 200 <= status < 300:
                        try:
                            reply = response.json() if response.content else None
                        except ValueError:
                            reply = None
                    else:
                        error = f"Wrong response from the webhook: {status} {response.reason_phrase}"
                except httpx.HTTPError as exc:
                    error = f"Connection failed: {type(exc).__name__}: {exc}"
                with self._cond:
                    self._deliveries.append(WebhookDelivery(time.time(), update_id, url, attempt, status, error))
                    while len(self._deliveries) > self.max_records:
                        self._deliveries.popleft()
                    done = error is None or attempt > len(self.webhook_retry_delays)
                    if error is not None:
                        self._webhook_error = (int(time.time()), error)
                    if done:
                        if self._pending and self._pending[0]["update_id"] == update_id:
                            self._pending.popleft()
                        attempts.pop(update_id, None)
                        self._version += 1
                    else:
                        self._cond.wait(self.webhook_retry_delays[attempt - 1])
                if isinstance(reply, dict) and isinstance(reply.get("method"), str) and self._last_token:
                    params = {k: v for k, v in reply.items() if k != "method"}
                    # Telegram drops the error of a webhook reply; the call record keeps it.
                    with contextlib.suppress(TelegramApiError):
                        self.call(self._last_token, reply["method"], params, via="webhook_reply")


_BUTTON_ACTIONS = (
    "url", "login_url", "switch_inline_query", "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat", "callback_game", "pay", "web_app", "copy_text",
)  # fmt: skip

_WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the same as a "
    "current content and reply markup of the message"
)


def _callback_datas(markup: Any) -> set[str]:
    if not isinstance(markup, dict):
        return set()
    return {
        str(b["callback_data"])
        for row in markup.get("inline_keyboard", [])
        for b in row
        if isinstance(b, dict) and "callback_data" in b
    }


# ---------------------------------------------------------------------------- methods

_Handler = Callable[[FakeTelegram, str, dict[str, Any]], Any]
_METHODS: dict[str, _Handler] = {}
_CANONICAL: dict[str, str] = {}


def _method(name: str) -> Callable[[_Handler], _Handler]:
    def register(handler: _Handler) -> _Handler:
        _METHODS[name.lower()] = handler
        _CANONICAL[name.lower()] = name
        return handler

    return register


def _canonical(method: str) -> str:
    return _CANONICAL.get(method.lower(), method)


@_method("getMe")
def _get_me(fake: FakeTelegram, token: str, params: dict[str, Any]) -> Any:
    return {
        **fake._bot_user(token),
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


@_method("sendMessage")
def _send_message(fake: FakeTelegram, token: str, params: dict[str, Any]) -> Any:
    chat = fake._target_chat(params, "sendMessage")
    text, plain, entities, parse_mode = fake._render(params)
    markup = fake._markup(params)
    fake._rate_limit(chat)
    message_id = fake._message_id(chat)
    message = fake._bot_message(token, chat, message_id, plain, entities, markup)
    chat.messages[message_id] = message
    chat.bot_messages.add(message_id)
    fake._sent.append(SentMessage(time.time(), chat.id, message_id, text, plain, parse_mode, markup, entities))
    while len(fake._sent) > fake.max_records:
        fake._sent.popleft()
    return message


@_method("editMessageText")
def _edit_message_text(fake: FakeTelegram, token: str, params: dict[str, Any]) -> Any:
    chat, message = fake._edited_message(params, "editMessageText")
    _text, plain, entities, _mode = fake._render(params)
    markup = fake._markup(params)
    new_markup = markup.get("inline_keyboard") if markup else None
    if (
        message.get("text") == plain
        and message.get("entities", []) == entities
        and message.get("reply_markup", {}).get("inline_keyboard") == new_markup
    ):
        raise _bad(_NOT_MODIFIED)
    fake._rate_limit(chat)
    message["text"] = plain
    message.pop("entities", None)
    message.pop("reply_markup", None)
    if entities:
        message["entities"] = entities
    if new_markup:
        message["reply_markup"] = {"inline_keyboard": new_markup}
    message["edit_date"] = int(time.time())
    return message


@_method("editMessageReplyMarkup")
def _edit_message_reply_markup(fake: FakeTelegram, token: str, params: dict[str, Any]) -> Any:
    chat, message = fake._edited_message(params, "editMessageReplyMarkup")
    markup = fake._markup(params)
    new_markup = markup.get("inline_keyboard") if markup else None
    if message.get("reply_markup", {}).get("inline_keyboard") == new_markup:
        raise _bad(_NOT_MODIFIED)
    fake._rate_limit(chat)
    message.pop("reply_markup", None)
    if new_markup:
        message["reply_markup"] = {"inline_keyboard": new_markup}
    message["edit_date"] = int(time.time())
    return message


@_method("deleteMessage")
def _delete_message(fake: FakeTelegram, token: str, params: dict[str, Any]) -> Any:
    chat = fake._target_chat(params, "deleteMessage")
    message_id = _as_int(params, "message_id")
    if message_id is None:
        raise _bad("message identifier is not specified")
    if message_id not in chat.messages:
        raise _bad("message to delete not found")
    del chat.messages[message_id]
    chat.bot_messages.discard(message_id)
    return True


@_method("answerCallbackQuery")
def _answer_callback_query(fake: FakeTelegram, token: str, params: dict[str, Any]) -> Any:
    query_id = str(params.get("callback_query_id") or "")
    if fake._callbacks.get(query_id, True):
        raise _bad("query is too old and response timeout expired or query ID is invalid")
    fake._callbacks[query_id] = True
    fake._answers.append(dict(params))
    return True


@_method("setMyCommands")
def _set_my_commands(fake: FakeTelegram, token: str, params: dict[str, Any]) -> Any:
    try:
        commands = _as_json(params, "commands")
    except ValueError:
        raise _bad("can't parse commands JSON object") from None
    if not isinstance(commands, list) or len(commands) > 100:
        raise _bad("can't parse commands JSON object")
    for command in commands:
        if not isinstance(command, dict) or not COMMAND_RE.match(str(command.get("command", ""))):
            raise _bad("BOT_COMMAND_INVALID")
        if not 1 <= len(str(command.get("description", ""))) <= 256:
            raise _bad("command description is empty" if not command.get("description") else "BOT_COMMAND_INVALID")
    fake._commands = [{"command": c["command"], "description": c["description"]} for c in commands]
    return True


@_method("getMyCommands")
def _get_my_commands(fake: FakeTelegram, token: str, params: dict[str, Any]) -> Any:
    return list(fake._commands)


@_method("deleteMyCommands")
def _delete_my_commands(fake: FakeTelegram, token: str, params: dict[str, Any]) -> Any:
    fake._commands = []
    return True


def _allowed_updates_param(params: dict[str, Any]) -> list[str] | None:
    if params.get("allowed_updates") in (None, ""):
        return None
    try:
        value = _as_json(params, "allowed_updates")
    except ValueError:
        raise _bad("can't parse allowed updates JSON object") from None
    if not isinstance(value, list):
        raise _bad("can't parse allowed updates JSON object")
    return [str(v) for v in value]


@_method("setWebhook")
def _set_webhook(fake: FakeTelegram, token: str, params: dict[str, Any]) -> Any:
    url = str(params.get("url") or "")
    secret = params.get("secret_token") or None
    if secret is not None and not SECRET_RE.match(str(secret)):
        raise _bad("secret token contains unallowed characters")
    allowed = _allowed_updates_param(params)
    if _as_bool(params, "drop_pending_updates"):
        fake._pending.clear()
    if not url:
        was = fake._webhook is not None
        fake._webhook = None
        fake._version += 1
        return _Described(True, "Webhook was deleted" if was else "Webhook is already deleted")
    if not url.startswith(("http://", "https://")):
        raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
    same = fake._webhook is not None and fake._webhook["url"] == url
    fake._webhook = {
        "url": url,
        "secret_token": secret,
        "allowed_updates": allowed,
        "max_connections": _as_int(params, "max_connections", 40),
    }
    fake._webhook_error = None
    fake._version += 1
    fake._cond.notify_all()
    fake._ensure_deliverer()
    return _Described(True, "Webhook is already set" if same else "Webhook was set")


@_method("deleteWebhook")
def _delete_webhook(fake: FakeTelegram, token: str, params: dict[str, Any]) -> Any:
    if _as_bool(params, "drop_pending_updates"):
        fake._pending.clear()
    was = fake._webhook is not None
    fake._webhook = None
    fake._version += 1
    return _Described(True, "Webhook was deleted" if was else "Webhook is already deleted")


@_method("getWebhookInfo")
def _get_webhook_info(fake: FakeTelegram, token: str, params: dict[str, Any]) -> Any:
    info: dict[str, Any] = {"url": "", "has_custom_certificate": False, "pending_update_count": len(fake._pending)}
    if fake._webhook is not None:
        info["url"] = fake._webhook["url"]
        info["max_connections"] = fake._webhook["max_connections"]
        info["ip_address"] = "127.0.0.1"
        if fake._webhook["allowed_updates"]:
            info["allowed_updates"] = fake._webhook["allowed_updates"]
        if fake._webhook_error is not None:
            info["last_error_date"], info["last_error_message"] = fake._webhook_error
    return info


@_method("getUpdates")
def _get_updates(fake: FakeTelegram, token: str, params: dict[str, Any]) -> Any:
    if fake._webhook is not None:
        raise TelegramApiError(409, _WEBHOOK_CONFLICT)
    fake._poll_generation += 1
    allowed = _allowed_updates_param(params)
    if allowed is not None:
        fake._allowed_updates = allowed or None
    offset = _as_int(params, "offset")
    if offset is not None and offset > 0:
        while fake._pending and fake._pending[0]["update_id"] < offset:
            fake._pending.popleft()
    elif offset is not None and offset < 0:
        while len(fake._pending) > -offset:
            fake._pending.popleft()
    return _pending_slice(fake, params)


def _pending_slice(fake: FakeTelegram, params: dict[str, Any]) -> list[dict[str, Any]]:
    kinds = fake._allowed()
    for update in [u for u in fake._pending if next(k for k in u if k != "update_id") not in kinds]:
        fake._pending.remove(update)
    limit = _as_int(params, "limit", 100) or 100
    limit = min(max(limit, 1), 100)
    return _copy(list(fake._pending)[:limit])


@dataclass
class _Described:
    """A result Telegram answers with a ``description`` beside it."""

    result: Any
    description: str


# ---------------------------------------------------------------------------- app


async def _request_params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body:
        return params
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            data = json.loads(body)
        except ValueError:
            raise _bad("can't parse JSON encoded request") from None
        if isinstance(data, dict):
            params.update(data)
    elif content_type.startswith("multipart/form-data"):
        raw = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            payload = part.get_payload(decode=True)
            if part.get_filename() is not None:
                params[name] = {"file": part.get_filename(), "size": len(payload or b"")}
            elif isinstance(payload, bytes):
                params[name] = payload.decode(part.get_content_charset() or "utf-8", "replace")
    else:
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


class _UserMessage(BaseModel):
    text: str = Field(min_length=1)
    first_name: str = "Customer"
    username: str | None = None
    language_code: str | None = None


class _Press(BaseModel):
    data: str
    message_id: int | None = None


class _FaultSpec(BaseModel):
    count: int = Field(default=1, ge=1)
    retry_after: int = Field(default=3, ge=1)
    chat_id: int | None = None
    method: str = "sendMessage"


class _RateLimitSpec(BaseModel):
    enabled: bool = True
    per_chat_per_second: float | None = Field(default=None, gt=0)
    per_chat_burst: int | None = Field(default=None, ge=1)
    global_per_second: float | None = Field(default=None, gt=0)
    global_burst: int | None = Field(default=None, ge=1)


def create_app(fake: FakeTelegram | None = None) -> FastAPI:
    """The FastAPI app of the fake; its state is ``app.state.fake``."""
    state = fake or FakeTelegram()
    app = FastAPI(title="Telegram Bot API (sandbox fake)", docs_url="/_fake/docs", openapi_url="/_fake/openapi.json")
    app.state.fake = state

    def error(exc: TelegramApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.error_code)

    @app.post("/_fake/chats/{chat_id}/messages")
    async def user_sends(chat_id: int, spec: _UserMessage) -> dict[str, Any]:
        return state.user_sends(
            chat_id, spec.text, first_name=spec.first_name, username=spec.username, language_code=spec.language_code
        )

    @app.post("/_fake/chats/{chat_id}/press")
    async def press(chat_id: int, spec: _Press) -> dict[str, Any]:
        try:
            return state.press_button(chat_id, spec.data, spec.message_id)
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.post("/_fake/chats/{chat_id}/block")
    async def block(chat_id: int) -> dict[str, Any]:
        return state.block(chat_id)

    @app.delete("/_fake/chats/{chat_id}/block")
    async def unblock(chat_id: int) -> dict[str, Any]:
        return state.unblock(chat_id)

    @app.get("/_fake/chats/{chat_id}/messages")
    async def chat_messages(chat_id: int) -> list[dict[str, Any]]:
        return state.messages(chat_id)

    @app.post("/_fake/faults")
    async def add_fault(spec: _FaultSpec) -> dict[str, Any]:
        state.fail_next(spec.count, retry_after=spec.retry_after, chat_id=spec.chat_id, method=spec.method)
        return {"faults": state.pending_faults()}

    @app.get("/_fake/faults")
    async def list_faults() -> dict[str, Any]:
        return {"faults": state.pending_faults()}

    @app.delete("/_fake/faults")
    async def clear_faults() -> dict[str, bool]:
        state.clear_faults()
        return {"ok": True}

    @app.post("/_fake/rate_limits")
    async def rate_limits(spec: _RateLimitSpec) -> dict[str, Any]:
        changes = {k: v for k, v in spec.model_dump().items() if k != "enabled" and v is not None}
        state.set_rate_limits(spec.enabled, **changes)
        return asdict(state.rate_limits)

    @app.get("/_fake/sent")
    async def sent(chat_id: int | None = None) -> list[dict[str, Any]]:
        return [m.as_json() for m in state.sent(chat_id)]

    @app.get("/_fake/calls")
    async def calls(method: str | None = None) -> list[dict[str, Any]]:
        return [c.as_json() for c in state.calls(method)]

    @app.get("/_fake/updates")
    async def updates() -> dict[str, Any]:
        return {"updates": state.updates(), "pending": [u["update_id"] for u in state.pending_updates()]}

    @app.get("/_fake/webhook")
    async def webhook() -> dict[str, Any]:
        return {"webhook": state.webhook, "deliveries": [asdict(d) for d in state.deliveries()]}

    @app.post("/_fake/reset")
    async def reset() -> dict[str, bool]:
        state.reset()
        return {"ok": True}

    async def long_poll(token: str, params: dict[str, Any], result: Any) -> Any:
        """Hold an empty getUpdates up to its timeout, answering as soon as an update is there."""
        timeout = min(float(_as_int(params, "timeout", 0) or 0), state.max_poll_seconds)
        if result or timeout <= 0:
            return result
        with state._lock:
            generation = state._poll_generation
            version = state._version
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not state._stopping:
            await asyncio.sleep(0.01)
            if state._webhook is not None:
                raise TelegramApiError(409, _WEBHOOK_CONFLICT)
            if state._poll_generation != generation:
                raise TelegramApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                )
            if state._version != version:
                version = state._version
                with state._lock:
                    result = _pending_slice(state, {"limit": params.get("limit")})
                if result:
                    return result
        return result

    @app.api_route("/bot{token}/{method}", methods=["GET", "POST"])
    async def bot_api(token: str, method: str, request: Request) -> JSONResponse:
        try:
            params = await _request_params(request)
            record = RecordedCall(at=time.time(), method=_canonical(method), params={})
            result = state._call(token, method, params, record)
            if record.method == "getUpdates":
                try:
                    result = await long_poll(token, params, result)
                except TelegramApiError as exc:
                    record.status, record.description = exc.error_code, exc.description
                    raise
        except TelegramApiError as exc:
            return error(exc)
        if isinstance(result, _Described):
            return JSONResponse({"ok": True, "result": result.result, "description": result.description})
        return JSONResponse({"ok": True, "result": result})

    return app


# ---------------------------------------------------------------------------- serving


class TelegramFakeServer(ServedApp):
    """The fake served by uvicorn on a loopback port, in a background thread.

    ``with TelegramFakeServer(tokens={TOKEN}) as server: Bot(TOKEN,
    session=AiohttpSession(api=TelegramAPIServer.from_base(server.url)))``; ``server.fake`` feeds
    updates, scripts faults and reads the record while it runs. ``async with`` works too,
    starting and stopping off the event loop. Stopping ends held getUpdates requests and
    webhook delivery.
    """

    label = "Telegram"
    graceful_shutdown_seconds = 2

    def __init__(
        self,
        fake: FakeTelegram | None = None,
        host: str = "127.0.0.1",
        *,
        tokens: set[str] | None = None,
        rate_limits: bool = True,
        require_known_chats: bool = True,
    ) -> None:
        self.fake = fake or FakeTelegram(
            tokens=tokens, rate_limits=RateLimits(enabled=rate_limits), require_known_chats=require_known_chats
        )
        super().__init__(create_app(self.fake), host)

    def _before_start(self) -> None:
        self.fake._stopping = False

    def _before_stop(self) -> None:
        self.fake.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jggl-telegram-fake``: serve the fake until interrupted."""
    parser = argparse.ArgumentParser(
        prog="jggl-telegram-fake",
        description="Serve a fake of the Telegram Bot API (aiogram: TelegramAPIServer.from_base('http://HOST:PORT')).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8093)
    parser.add_argument(
        "--token", action="append", default=None, help="a bot token accepted (repeatable); default: any"
    )
    parser.add_argument("--no-rate-limits", action="store_true", help="never answer 429 unless scripted")
    parser.add_argument("--any-chat", action="store_true", help="let the bot write to chats that never wrote to it")
    parser.add_argument("--strict-html", action="store_true", help="also refuse a bare & in HTML (Telegram keeps it)")
    args = parser.parse_args(argv)
    for token in args.token or []:
        if not TOKEN_RE.match(token):
            parser.error(f"--token {token!r} is not <digits>:<text>")
    fake = FakeTelegram(
        tokens=set(args.token) if args.token else None,
        rate_limits=RateLimits(enabled=not args.no_rate_limits),
        require_known_chats=not args.any_chat,
        strict_html=args.strict_html,
    )
    try:
        uvicorn.run(create_app(fake), host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=2)
    finally:
        fake.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
