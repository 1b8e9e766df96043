"""The Graph fake's Conversations API and the customers who write through it.

Meta keeps every conversation of a page; when webhooks are lost (an outage longer than
Meta's retries, a dropped subscription) the Conversations API is how the messages are
found again. This module gives the fake that memory:

* :meth:`Inbox.customer_writes` records a customer's message in the page's conversation
  and returns the webhook Meta would post for it; :meth:`Inbox.deliver` posts it, signed,
  to ingest, unless :attr:`Inbox.drop_webhooks` is on (then it is only remembered in
  :attr:`Inbox.dropped`), which is how a test loses webhooks and recovers them.
* Replies the fake's Send API accepted are recorded in the conversation too, from the page.
* ``GET /{version}/{page_id}/conversations?platform=messenger|instagram&fields=...&user_id=``:
  the page's conversations, most recently updated first, ``{"data": [{"id", "updated_time"}],
  "paging": {"cursors": {"before", "after"}, "next"}}`` with ``limit`` (default 25) and
  ``after``.
* ``GET /{version}/{conversation_id}/messages?fields=id,created_time,from,to,message,attachments``:
  its messages, newest first, the same paging; like Meta, only the newest
  :data:`MESSAGES_KEPT` of a conversation are available.

Times are Meta's ``2026-12-06T10:00:00+0000``. Conversation ids are ``t_<digits>`` and
stable for a (page, customer) pair.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .meta_webhooks import signed, webhook

__all__ = ["MESSAGES_KEPT", "Inbox", "StoredMessage", "add_conversation_routes", "meta_time"]

MESSAGES_KEPT = 20
"""Messages of a conversation the API still answers (Meta: the last 20)."""

Guard = Callable[[Request, str, str], Awaitable[tuple[Any, JSONResponse | None]]]
ErrorAnswer = Callable[..., JSONResponse]


def meta_time(at_ms: int) -> str:
    """``2026-12-06T10:00:00+0000``, the way Graph writes times."""
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


@dataclass(frozen=True)
class StoredMessage:
    """One message of a conversation, as the Conversations API shows it."""

    mid: str
    at_ms: int
    from_id: str
    to_id: str
    text: str | None = None
    attachments: tuple[dict[str, Any], ...] = ()

    def as_graph(self, fields: set[str]) -> dict[str, Any]:
        answer: dict[str, Any] = {"id": self.mid}
        if "created_time" in fields:
            answer["created_time"] = meta_time(self.at_ms)
        if "from" in fields:
            answer["from"] = {"id": self.from_id}
        if "to" in fields:
            answer["to"] = {"data": [{"id": self.to_id}]}
        if "message" in fields:
            answer["message"] = self.text or ""
        if "attachments" in fields and self.attachments:
            answer["attachments"] = {"data": [dict(a) for a in self.attachments]}
        return answer


@dataclass
class _Conversation:
    id: str
    page_id: str
    user_id: str
    platform: Literal["messenger", "instagram"]
    messages: list[StoredMessage] = field(default_factory=list)

    @property
    def updated_ms(self) -> int:
        return max((m.at_ms for m in self.messages), default=0)


@dataclass
class Inbox:
    """Every page's conversations, and the webhooks delivered or dropped. Thread-safe."""

    drop_webhooks: bool = False
    """True: :meth:`deliver` posts nothing (the webhooks Meta "lost")."""
    dropped: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    _conversations: dict[str, _Conversation] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _counter: int = 0

    @staticmethod
    def conversation_id(page_id: str, user_id: str) -> str:
        digest = hashlib.sha256(f"{page_id}:{user_id}".encode()).hexdigest()
        return f"t_{int(digest[:15], 16)}"

    def record(
        self,
        page_id: str,
        user_id: str,
        message: StoredMessage,
        platform: Literal["messenger", "instagram"] = "messenger",
    ) -> None:
        """Remember ``message`` in the conversation of ``page_id`` with ``user_id``."""
        key = self.conversation_id(page_id, user_id)
        with self._lock:
            conversation = self._conversations.setdefault(key, _Conversation(key, page_id, user_id, platform))
            if all(m.mid != message.mid for m in conversation.messages):
                conversation.messages.append(message)
                conversation.messages.sort(key=lambda m: (m.at_ms, m.mid))

    def customer_writes(
        self,
        page_id: str,
        user_id: str,
        text: str,
        *,
        platform: Literal["messenger", "instagram"] = "messenger",
        at_ms: int | None = None,
        mid: str | None = None,
    ) -> dict[str, Any]:
        """Record a customer's text message and return the webhook body Meta posts for it."""
        at_ms = at_ms if at_ms is not None else int(time.time() * 1000)
        if mid is None:
            with self._lock:
                self._counter += 1
                counter = self._counter
            raw = hashlib.sha256(f"{page_id}:{user_id}:{at_ms}:{counter}".encode()).digest()
            mid = "m_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
        self.record(page_id, user_id, StoredMessage(mid, at_ms, user_id, page_id, text), platform)
        message = {"mid": mid, "text": text}
        item = {"sender": {"id": user_id}, "recipient": {"id": page_id}, "timestamp": at_ms, "message": message}
        return webhook(platform, page_id, [item], at_ms)

    def deliver(self, body: dict[str, Any], url: str, app_secret: str) -> int | None:
        """Post ``body`` signed to ``url`` (ingest's ``/webhooks/meta``); the answer's status,
        None when it was dropped (:attr:`drop_webhooks`) or ingest could not be reached."""
        with self._lock:
            if self.drop_webhooks:
                self.dropped.append(body)
                return None
        request = signed(body, app_secret)
        try:
            status = httpx.post(url, content=request.body, headers=request.headers, timeout=10.0).status_code
        except httpx.HTTPError:
            status = None
        with self._lock:
            self.delivered.append(body)
        return status

    def conversations(self, page_id: str, platform: str | None, user_id: str | None) -> list[_Conversation]:
        """The page's conversations, most recently updated first."""
        with self._lock:
            found = [
                c
                for c in self._conversations.values()
                if c.page_id == page_id
                and (platform is None or c.platform == platform)
                and (user_id is None or c.user_id == user_id)
            ]
        return sorted(found, key=lambda c: (c.updated_ms, c.id), reverse=True)

    def messages(self, conversation_id: str) -> list[StoredMessage] | None:
        """The newest :data:`MESSAGES_KEPT` messages, newest first; None for an unknown id."""
        with self._lock:
            conversation = self._conversations.get(conversation_id)
            if conversation is None:
                return None
            return list(reversed(conversation.messages[-MESSAGES_KEPT:]))

    def reset(self) -> None:
        with self._lock:
            self._conversations.clear()
            self.dropped.clear()
            self.delivered.clear()
            self.drop_webhooks = False


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(cursor: str | None) -> int | None:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    prefix, _, number = text.partition(":")
    return int(number) if prefix == "offset" and number.isdigit() else None


def _page(
    request: Request, items: list[Any], render: Callable[[Any], dict[str, Any]], error: ErrorAnswer
) -> JSONResponse:
    """One page of ``items`` in Graph's shape, with cursors and the next page's URL."""
    offset = _offset(request.query_params.get("after"))
    if offset is None:
        return error(100, message="(#100) Invalid cursor")
    try:
        limit = min(max(int(request.query_params.get("limit", "25")), 1), 100)
    except ValueError:
        return error(100, message="(#100) Param limit must be an integer")
    chunk = items[offset : offset + limit]
    answer: dict[str, Any] = {"data": [render(item) for item in chunk]}
    if chunk:
        paging: dict[str, Any] = {"cursors": {"before": _cursor(offset), "after": _cursor(offset + len(chunk))}}
        if offset + len(chunk) < len(items):
            paging["next"] = str(request.url.include_query_params(after=_cursor(offset + len(chunk))))
        answer["paging"] = paging
    return JSONResponse(answer)


def add_conversation_routes(app: FastAPI, inbox: Inbox, guard: Guard, error: ErrorAnswer) -> None:
    """Register the Conversations API on the fake's app; ``guard`` records a call and
    answers scripted and token errors, ``error`` builds Meta's error answer."""

    @app.get("/{version}/{page_id}/conversations")
    async def list_conversations(version: str, page_id: str, request: Request) -> JSONResponse:
        _, failure = await guard(request, request.url.path, page_id)
        if failure is not None:
            return failure
        platform = request.query_params.get("platform")
        found = inbox.conversations(page_id, platform, request.query_params.get("user_id"))
        fields = set(request.query_params.get("fields", "id").split(","))

        def render(conversation: _Conversation) -> dict[str, Any]:
            answer: dict[str, Any] = {"id": conversation.id}
            if "updated_time" in fields:
                answer["updated_time"] = meta_time(conversation.updated_ms)
            return answer

        return _page(request, found, render, error)

    @app.get("/{version}/{conversation_id}/messages")
    async def list_messages(version: str, conversation_id: str, request: Request) -> JSONResponse:
        _, failure = await guard(request, request.url.path, conversation_id)
        if failure is not None:
            return failure
        found = inbox.messages(conversation_id)
        if found is None:
            return error(
                100, subcode=33, message=f"Unsupported get request. Object with ID '{conversation_id}' does not exist"
            )
        fields = set(request.query_params.get("fields", "id,created_time").split(","))
        return _page(request, found, lambda message: message.as_graph(fields), error)
