"""A fake of Meta's Graph API that speaks its wire format, for the sandbox and the tests.

It answers what crm's real httpx client asks:

* ``GET /{version}/{user_id}?fields=...``: a customer's profile. Known ids answer what
  was registered with :meth:`FakeGraph.add_profile`; unknown ids get a made-up but
  stable profile (``unknown_profiles="generate"``, the demo default) or Meta's
  "object does not exist" error (``"error"``). Only the requested fields are returned,
  plus ``id``, as Graph does.
* ``POST /{version}/{page_id}/messages`` (or ``/me/messages``): the Send API, answering
  ``{"recipient_id", "message_id"}`` with a message id in Meta's style (``m_…`` on
  Messenger, ``aWdf…`` on Instagram accounts listed in :attr:`FakeGraph.instagram_accounts`)
  and remembering what was sent. Every attempt is recorded with its time
  (:meth:`FakeGraph.send_attempts`), successes in :attr:`FakeGraph.sent`.
* Echoes, like Meta: with :attr:`FakeGraph.echo_url` set (ingest's ``/webhooks/meta``),
  each successful send is posted back as a signed webhook (``X-Hub-Signature-256`` with
  :attr:`FakeGraph.app_secret`), ``message.is_echo: true``, our ``app_id``, sender the
  page and recipient the customer. ``echo_mode`` ``"after"`` posts it once the send is
  answered, ``"before"`` posts it (and waits for the 200) before answering, which is
  the race a real Meta sometimes produces; ``"off"`` sends none.
* Errors in Meta's shape, ``{"error": {"message", "type", "code", "error_subcode",
  "fbtrace_id"}}``, on demand: :meth:`FakeGraph.fail_next` (or ``POST /_fake/errors``)
  scripts "the next N calls (matching a path fragment) answer code C";
  :meth:`FakeGraph.fail_sends` does it for one page's sends. Throttling codes (4, 17,
  32, 613, 80006) come with ``X-App-Usage`` and ``X-Business-Use-Case-Usage`` headers,
  whose ``estimated_time_to_regain_access`` (minutes) is ``regain_minutes``.

Tokens travel as ``Authorization: Bearer`` or ``?access_token=``; a missing token is
Meta's code 104, a token outside :attr:`FakeGraph.tokens` (when that set is given) 190.

* Channel health (:mod:`jggl_sandbox.graph_health`): ``GET /{version}/debug_token`` with the
  app token ``<app_id>|<app_secret>`` says whether a page token is valid and when it
  expires (:meth:`TokenHealth.expire`, :meth:`TokenHealth.invalidate`), and
  ``GET /{version}/{page_id}/subscribed_apps`` lists the apps receiving the page's
  webhooks: ours with the usual fields until :meth:`TokenHealth.unsubscribe`. The switches
  are :attr:`FakeGraph.health`.

Control endpoints live under ``/_fake/``: ``profiles``, ``errors``, ``echo``, ``requests``,
``sent``, ``echoes``, ``health``, ``reset``. :class:`GraphFakeServer` runs the app with uvicorn on a loopback
port in a background thread, for tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .graph_conversations import Inbox, StoredMessage, add_conversation_routes
from .graph_health import TokenHealth, add_health_routes
from .meta_webhooks import DEFAULT_APP_ID, signed, webhook
from .serving import ServedApp

__all__ = [
    "STANDARD_ERRORS",
    "THROTTLING_CODES",
    "EchoMode",
    "FakeGraph",
    "GraphFakeServer",
    "RecordedRequest",
    "ScriptedError",
    "create_app",
]

STANDARD_ERRORS: dict[int, tuple[str, str, int | None]] = {
    1: ("An unknown error occurred", "OAuthException", None),
    2: ("An unexpected error has occurred. Please retry your request later.", "OAuthException", None),
    4: ("(#4) Application request limit reached", "OAuthException", None),
    10: ("(#10) This message is sent outside of allowed window.", "OAuthException", 2018278),
    17: ("(#17) User request limit reached", "OAuthException", None),
    32: ("(#32) Page request limit reached", "OAuthException", None),
    100: ("(#100) Invalid parameter", "OAuthException", None),
    104: ("An access token is required to request this resource.", "OAuthException", None),
    190: (
        "Error validating access token: Session has expired on Tuesday, 24-Nov-26 10:00:00 PST.",
        "OAuthException",
        463,
    ),
    551: ("(#551) This person isn't available right now.", "OAuthException", 1545041),
    613: ("(#613) Calls to this api have exceeded the rate limit.", "OAuthException", None),
    80006: ("(#80006) There have been too many messages sent to this account. Please wait.", "OAuthException", None),
}
"""Meta's message, type and usual subcode for the error codes crm decides on."""

THROTTLING_CODES = frozenset({4, 17, 32, 613, 80006})
"""Codes Meta answers when a caller goes too fast; they come with usage headers."""

EchoMode = Literal["off", "after", "before"]

_FIRST = ("Olena", "Ivan", "Anna", "Maks", "Sofia", "Taras", "Iryna", "Jan", "Marta", "Oleh", "Kate", "Lukas")
_LAST = ("Koval", "Shevchenko", "Bondar", "Melnyk", "Nowak", "Tkachenko", "Kravets", "Schmidt", "Lysenko", "Smith")


@dataclass
class ScriptedError:
    """An error the fake answers instead of the real result, ``remaining`` more times."""

    code: int
    remaining: int = 1
    subcode: int | None = None
    message: str | None = None
    type: str | None = None
    http_status: int = 400
    match: str | None = None
    regain_minutes: float | None = None

    def headers(self, object_id: str) -> dict[str, str]:
        """The usage headers Meta adds to a throttling answer (none for other errors)."""
        if self.code not in THROTTLING_CODES:
            return {}
        regain = self.regain_minutes if self.regain_minutes is not None else 0
        usage = {"call_count": 100, "total_cputime": 25, "total_time": 30}
        business = {object_id: [{"type": "pages", **usage, "estimated_time_to_regain_access": regain}]}
        return {
            "X-App-Usage": json.dumps(usage),
            "X-Business-Use-Case-Usage": json.dumps(business),
        }

    def body(self) -> dict[str, Any]:
        """Meta's error object for this error."""
        message, type_, subcode = STANDARD_ERRORS.get(self.code, (f"(#{self.code}) Error", "OAuthException", None))
        return _error_body(
            self.code,
            self.message or message,
            self.type or type_,
            self.subcode if self.subcode is not None else subcode,
        )


@dataclass(frozen=True)
class RecordedRequest:
    """A call the fake received."""

    method: str
    path: str
    query: dict[str, str]
    token: str | None
    body: Any = None
    at: float = field(default_factory=time.time)
    """When the call arrived (Unix time), so tests can measure a client's backoff."""


@dataclass
class FakeGraph:
    """The fake's state: profiles, scripted errors, and what it received. Thread-safe."""

    unknown_profiles: Literal["generate", "error"] = "generate"
    tokens: set[str] | None = None
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[ScriptedError] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    instagram_accounts: set[str] = field(default_factory=set)
    """Ids answered as Instagram accounts (their mids and echoes are Instagram's)."""
    echo_url: str | None = None
    """Where echoes are posted (ingest's ``/webhooks/meta``); None: no echoes."""
    app_secret: str = ""
    """Signs the echo webhooks, as Meta signs with the app secret."""
    app_id: int = DEFAULT_APP_ID
    """Our Meta app's id, carried by the echoes of what it sent (``META_APP_ID``)."""
    echo_mode: EchoMode = "after"
    echo_delay: float = 0.0
    """Seconds between answering a send and posting its echo (mode ``"after"``)."""
    echoes: list[dict[str, Any]] = field(default_factory=list)
    """Each echo posted: ``{"mid", "status", "body"}`` (status None when the post failed)."""
    profile_delay: float = 0.0
    """Seconds a profile lookup takes to answer (a slow Graph API)."""
    inbox: Inbox = field(default_factory=Inbox)
    """Every page's conversations (the Conversations API), and the customers' webhooks."""
    health: TokenHealth = field(default_factory=TokenHealth)
    """Page tokens' validity and expiry (``debug_token``) and pages' subscriptions (``subscribed_apps``)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _counter: int = 0

    def add_profile(self, user_id: str, **fields: Any) -> None:
        """Register what ``GET /{user_id}`` answers (first_name, last_name, name, username, profile_pic...)."""
        with self._lock:
            self.profiles[str(user_id)] = dict(fields)

    def fail_next(
        self,
        count: int = 1,
        *,
        code: int = 4,
        subcode: int | None = None,
        message: str | None = None,
        http_status: int = 400,
        match: str | None = None,
        regain_minutes: float | None = None,
    ) -> None:
        """Make the next ``count`` calls whose path contains ``match`` (any call if None) fail with ``code``."""
        with self._lock:
            self.errors.append(
                ScriptedError(
                    code=code,
                    remaining=count,
                    subcode=subcode,
                    message=message,
                    http_status=http_status,
                    match=match,
                    regain_minutes=regain_minutes,
                )
            )

    def fail_sends(
        self,
        page_id: str,
        count: int = 1,
        *,
        code: int = 613,
        subcode: int | None = None,
        message: str | None = None,
        regain_minutes: float | None = None,
    ) -> None:
        """Make the next ``count`` Send API calls for ``page_id`` answer Meta's error ``code``."""
        self.fail_next(
            count,
            code=code,
            subcode=subcode,
            message=message,
            match=f"/{page_id}/messages",
            regain_minutes=regain_minutes,
        )

    def send_attempts(self, page_id: str | None = None) -> list[RecordedRequest]:
        """Every Send API call received (answered or refused), oldest first."""
        return [
            r for r in self.calls("/messages") if r.method == "POST" and (page_id is None or f"/{page_id}/" in r.path)
        ]

    def sent_to(self, page_id: str) -> list[dict[str, Any]]:
        """The sends to ``page_id`` that succeeded, with their ``message_id``."""
        with self._lock:
            return [s for s in self.sent if s["page_id"] == page_id]

    def reset(self) -> None:
        """Forget profiles, scripted errors and recorded calls."""
        with self._lock:
            self.profiles.clear()
            self.errors.clear()
            self.requests.clear()
            self.sent.clear()
            self.echoes.clear()
        self.inbox.reset()
        self.health.reset()

    def calls(self, path_fragment: str = "") -> list[RecordedRequest]:
        """Recorded calls whose path contains ``path_fragment``."""
        with self._lock:
            return [r for r in self.requests if path_fragment in r.path]

    # ------------------------------------------------------------------ internals

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _scripted(self, path: str) -> ScriptedError | None:
        with self._lock:
            for error in self.errors:
                if error.remaining > 0 and (error.match is None or error.match in path):
                    error.remaining -= 1
                    return error
            self.errors[:] = [e for e in self.errors if e.remaining > 0]
        return None

    def _profile(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            known = self.profiles.get(user_id)
        if known is not None:
            return {"id": user_id, **known}
        if self.unknown_profiles == "error":
            return None
        return {"id": user_id, **generated_profile(user_id)}

    def _next_message_id(self, page_id: str = "") -> str:
        with self._lock:
            self._counter += 1
            counter = self._counter
            instagram = page_id in self.instagram_accounts
        if instagram:
            # Unpadded base64 of an item descriptor, hence Instagram's "aWdf" prefix.
            raw = f"ig_message_item:1:IGMessageData:{page_id}:{secrets.randbelow(10**38):038d}{counter}"
            return base64.b64encode(raw.encode()).decode().rstrip("=")
        return "m_" + base64.urlsafe_b64encode(os.urandom(62) + counter.to_bytes(4, "big")).decode().rstrip("=")

    def echo_webhook(self, page_id: str, send: dict[str, Any], message_id: str, at_ms: int) -> dict[str, Any]:
        """The webhook Meta posts for a message the page sent through our app."""
        recipient = send["recipient"]["id"]
        raw = send.get("message")
        outgoing: dict[str, Any] = raw if isinstance(raw, dict) else {}
        message: dict[str, Any] = {"mid": message_id, "is_echo": True, "app_id": self.app_id}
        if isinstance(outgoing.get("text"), str):
            message["text"] = outgoing["text"]
        attachment = outgoing.get("attachment")
        if isinstance(attachment, dict):
            raw_payload = attachment.get("payload")
            payload: dict[str, Any] = raw_payload if isinstance(raw_payload, dict) else {}
            # Meta re-hosts the file: the echo points at its CDN, not at the URL we gave.
            digest = hashlib.sha256(str(payload.get("url")).encode()).hexdigest()
            message["attachments"] = [
                {
                    "type": attachment.get("type"),
                    "payload": {"url": f"https://scontent.xx.fbcdn.net/v/t1.15752-9/{digest[:24]}_n?_nc_cat=1"},
                }
            ]
        if isinstance(outgoing.get("metadata"), str):
            message["metadata"] = outgoing["metadata"]
        item = {"sender": {"id": page_id}, "recipient": {"id": recipient}, "timestamp": at_ms, "message": message}
        platform: Literal["messenger", "instagram"] = "instagram" if page_id in self.instagram_accounts else "messenger"
        return webhook(platform, page_id, [item], at_ms)

    async def post_echo(self, body: dict[str, Any]) -> int | None:
        """Post an echo webhook to :attr:`echo_url`, signed; the answer's status (None if unreachable)."""
        if not self.echo_url:
            return None
        request = signed(body, self.app_secret)
        mid = body["entry"][0]["messaging"][0]["message"]["mid"]
        status: int | None
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                status = (await client.post(self.echo_url, content=request.body, headers=request.headers)).status_code
        except httpx.HTTPError:
            status = None
        with self._lock:
            self.echoes.append({"mid": mid, "status": status, "body": body})
        return status


def generated_profile(user_id: str) -> dict[str, Any]:
    """A made-up profile that is always the same for the same id."""
    digest = hashlib.sha256(user_id.encode()).digest()
    first, last = _FIRST[digest[0] % len(_FIRST)], _LAST[digest[1] % len(_LAST)]
    return {
        "first_name": first,
        "last_name": last,
        "name": f"{first} {last}",
        "username": f"{first.lower()}.{last.lower()}{digest[2] % 100}",
        "profile_pic": f"https://platform-lookaside.fbsbx.com/platform/profilepic/?psid={user_id}&width=1024&hash={digest.hex()[:16]}",
    }


def _error_body(code: int, message: str, type_: str, subcode: int | None) -> dict[str, Any]:
    trace = hashlib.sha256(f"{code}{message}{time.time_ns()}".encode()).hexdigest()[:11]
    error: dict[str, Any] = {"message": message, "type": type_, "code": code, "fbtrace_id": "A" + trace}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


def _error(code: int, *, message: str | None = None, subcode: int | None = None, status: int = 400) -> JSONResponse:
    default_message, type_, default_subcode = STANDARD_ERRORS.get(code, (f"(#{code}) Error", "OAuthException", None))
    body = _error_body(code, message or default_message, type_, subcode if subcode is not None else default_subcode)
    return JSONResponse(body, status_code=status)


async def _post_later(state: FakeGraph, echo: dict[str, Any], delay: float) -> None:
    if delay > 0:
        await asyncio.sleep(delay)
    await state.post_echo(echo)


_MESSAGING_TYPES = frozenset({"RESPONSE", "UPDATE", "MESSAGE_TAG"})


def _send_problem(body: dict[str, Any]) -> str | None:
    """Meta's (#100) complaint about a Send API body, or None when it is well-formed."""
    messaging_type = body.get("messaging_type", "RESPONSE")
    if messaging_type not in _MESSAGING_TYPES:
        return f"(#100) Param messaging_type must be one of {{{', '.join(sorted(_MESSAGING_TYPES))}}}"
    if messaging_type == "MESSAGE_TAG" and not isinstance(body.get("tag"), str):
        return "(#100) Tag is required for MESSAGE_TAG messaging type"
    message = body.get("message")
    if not isinstance(message, dict) or not (isinstance(message.get("text"), str) or "attachment" in message):
        return "(#100) Message cannot be empty, must provide valid attachment or text"
    if isinstance(message.get("text"), str) and len(message["text"]) > 2000:
        return "(#100) Length of param message[text] must be less than or equal to 2000"
    return None


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.query_params.get("access_token") or None


class _ErrorRequest(BaseModel):
    code: int = 4
    count: int = Field(default=1, ge=1)
    subcode: int | None = None
    message: str | None = None
    http_status: int = Field(default=400, ge=400, le=599)
    match: str | None = None
    regain_minutes: float | None = Field(default=None, ge=0)


class _EchoRequest(BaseModel):
    url: str | None = None
    app_secret: str | None = None
    app_id: int | None = None
    mode: EchoMode | None = None
    delay: float | None = Field(default=None, ge=0, le=60)
    instagram_accounts: list[str] | None = None


def create_app(fake: FakeGraph | None = None) -> FastAPI:
    """The FastAPI app of the fake; its state is ``app.state.fake``."""
    state = fake or FakeGraph()
    app = FastAPI(title="Meta Graph API (sandbox fake)", docs_url="/_fake/docs", openapi_url="/_fake/openapi.json")
    app.state.fake = state

    # Control endpoints come first: "/_fake/..." would otherwise match "/{version}/{id}".
    @app.post("/_fake/profiles")
    async def add_profiles(profiles: dict[str, dict[str, Any]]) -> dict[str, int]:
        for user_id, fields in profiles.items():
            state.add_profile(user_id, **fields)
        return {"profiles": len(state.profiles)}

    @app.post("/_fake/errors")
    async def script_error(spec: _ErrorRequest) -> dict[str, bool]:
        state.fail_next(
            spec.count,
            code=spec.code,
            subcode=spec.subcode,
            message=spec.message,
            http_status=spec.http_status,
            match=spec.match,
            regain_minutes=spec.regain_minutes,
        )
        return {"ok": True}

    @app.post("/_fake/echo")
    async def configure_echo(spec: _EchoRequest) -> dict[str, Any]:
        with state._lock:
            if spec.url is not None:
                state.echo_url = spec.url or None
            if spec.app_secret is not None:
                state.app_secret = spec.app_secret
            if spec.app_id is not None:
                state.app_id = spec.app_id
            if spec.mode is not None:
                state.echo_mode = spec.mode
            if spec.delay is not None:
                state.echo_delay = spec.delay
            if spec.instagram_accounts is not None:
                state.instagram_accounts = set(spec.instagram_accounts)
        return {"url": state.echo_url, "app_id": state.app_id, "mode": state.echo_mode}

    @app.get("/_fake/echoes")
    async def list_echoes() -> list[dict[str, Any]]:
        return [{"mid": e["mid"], "status": e["status"]} for e in state.echoes]

    @app.get("/_fake/requests")
    async def list_requests() -> list[dict[str, Any]]:
        return [
            {"method": r.method, "path": r.path, "query": r.query, "has_token": r.token is not None, "at": r.at}
            for r in state.calls()
        ]

    @app.get("/_fake/sent")
    async def list_sent() -> list[dict[str, Any]]:
        return list(state.sent)

    @app.post("/_fake/reset")
    async def reset() -> dict[str, bool]:
        state.reset()
        return {"ok": True}

    async def _guard(request: Request, path: str, object_id: str = "") -> tuple[Any, JSONResponse | None]:
        """Record the call, then answer a scripted or token error if one applies; returns (body, error)."""
        token = _token(request)
        body: Any = None
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                body = None
        query = {k: v for k, v in request.query_params.items() if k != "access_token"}
        state._record(RecordedRequest(request.method, path, query, token, body))
        scripted = state._scripted(path)
        if scripted is not None:
            return body, JSONResponse(
                scripted.body(), status_code=scripted.http_status, headers=scripted.headers(object_id)
            )
        if token is None:
            return body, _error(104)
        if state.tokens is not None and token not in state.tokens:
            return body, _error(190, message="Invalid OAuth access token - Cannot parse access token")
        return body, None

    add_conversation_routes(app, state.inbox, _guard, _error)
    add_health_routes(app, state, _guard, _error)

    @app.get("/{version}/{object_id}")
    async def get_object(version: str, object_id: str, request: Request) -> JSONResponse:
        _, failure = await _guard(request, request.url.path)
        if failure is not None:
            return failure
        if not version.startswith("v"):
            return _error(2500, message=f"Unknown path components: /{version}", status=400)
        if state.profile_delay > 0:
            await asyncio.sleep(state.profile_delay)
        profile = state._profile(object_id)
        if profile is None:
            return _error(
                100,
                subcode=33,
                message=(
                    f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be loaded due "
                    "to missing permissions, or does not support this operation."
                ),
            )
        fields = [f.strip() for f in request.query_params.get("fields", "").split(",") if f.strip()]
        answer = {"id": profile["id"]}
        answer.update({name: profile[name] for name in fields if name in profile})
        return JSONResponse(answer)

    @app.post("/{version}/{page_id}/messages")
    async def send_message(version: str, page_id: str, request: Request, background: BackgroundTasks) -> JSONResponse:
        body, failure = await _guard(request, request.url.path, page_id)
        if failure is not None:
            return failure
        recipient = body.get("recipient") if isinstance(body, dict) else None
        recipient_id = recipient.get("id") if isinstance(recipient, dict) else None
        if not isinstance(recipient_id, str) or not isinstance(body, dict) or "message" not in body:
            return _error(100, message="(#100) The parameter recipient is required")
        problem = _send_problem(body)
        if problem is not None:
            return _error(100, message=problem)
        message_id = state._next_message_id(page_id)
        at_ms = int(time.time() * 1000)
        with state._lock:
            state.sent.append({"page_id": page_id, "message_id": message_id, "at": at_ms / 1000, **body})
            echo_mode = state.echo_mode if state.echo_url else "off"
            platform: Literal["messenger", "instagram"] = (
                "instagram" if page_id in state.instagram_accounts else "messenger"
            )
        text = body["message"].get("text") if isinstance(body["message"], dict) else None
        reply = StoredMessage(message_id, at_ms, page_id, recipient_id, text if isinstance(text, str) else None)
        state.inbox.record(page_id, recipient_id, reply, platform)
        if echo_mode != "off":
            echo = state.echo_webhook(page_id, body, message_id, at_ms)
            if echo_mode == "before":
                await state.post_echo(echo)
            else:
                background.add_task(_post_later, state, echo, state.echo_delay)
        return JSONResponse({"recipient_id": recipient_id, "message_id": message_id})

    return app


class GraphFakeServer(ServedApp):
    """The fake served by uvicorn on a loopback port, in a background thread.

    ``with GraphFakeServer() as server: client = GraphClient(server.url, "v25.0")``
    (``server.url`` is ``META_GRAPH_URL``); ``server.fake`` scripts profiles and errors
    while it runs. ``port`` is the one to bind (``make demo``: 8090); 0 (the tests): a free one.
    """

    label = "Graph"

    def __init__(self, fake: FakeGraph | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.fake = fake or FakeGraph()
        super().__init__(create_app(self.fake), host, port)
