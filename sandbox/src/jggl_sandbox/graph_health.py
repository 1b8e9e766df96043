"""The Graph fake's health endpoints: what a page token is worth, and whether our app
receives the page's webhooks.

* ``GET /{version}/debug_token?input_token=<page token>`` with the *app* token
  ``<app_id>|<app_secret>`` (``?access_token=`` or ``Authorization: Bearer``): Meta's
  ``{"data": {"app_id", "type", "application", "is_valid", "expires_at", "scopes", ...}}``.
  An input token is valid when :attr:`FakeGraph.tokens` lists it (any token when that set
  is None) and :meth:`TokenHealth.invalidate` was not called for it; ``expires_at`` is what
  :meth:`TokenHealth.expire` set (0, "never", by default), and a token past it is invalid
  with Meta's subcode 463. An invalid token answers ``is_valid: false`` with Meta's
  ``data.error`` object, as Meta does, not an HTTP error. A wrong app token is Meta's
  code 190, a missing one 104.
* ``GET /{version}/{page_id}/subscribed_apps`` with the page token: the apps subscribed to
  the page's webhooks, ``{"data": [{"id", "name", "link", "category", "subscribed_fields"}]}``.
  Every page is subscribed to our app (:attr:`FakeGraph.app_id`) with
  :data:`DEFAULT_FIELDS` until :meth:`TokenHealth.unsubscribe`; :meth:`TokenHealth.subscribe`
  sets the fields (or another app). A token :meth:`TokenHealth.invalidate` made invalid is
  refused here with code 190.
* ``POST /_fake/health``: the same switches over HTTP (``unsubscribe``, ``subscribe``,
  ``expire``, ``invalidate``).

Scripted errors (:meth:`FakeGraph.fail_next` with ``match="debug_token"`` or
``"subscribed_apps"``) apply to both endpoints, so throttling can be tried too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from .graph_fake import FakeGraph

__all__ = ["DEFAULT_FIELDS", "SCOPES", "TokenHealth", "add_health_routes"]

DEFAULT_FIELDS: tuple[str, ...] = (
    "messages",
    "messaging_postbacks",
    "messaging_optins",
    "message_deliveries",
    "message_reads",
    "message_echoes",
    "message_reactions",
    "messaging_referrals",
)
"""The webhook fields a page is subscribed to unless a test says otherwise."""
SCOPES: tuple[str, ...] = ("pages_messaging", "pages_manage_metadata", "pages_show_list", "instagram_manage_messages")
"""The permissions a valid page token carries."""
APP_NAME = "JGGL CRM"

Guard = Callable[[Request, str, str], Awaitable[tuple[Any, JSONResponse | None]]]
ErrorAnswer = Callable[..., JSONResponse]


@dataclass(frozen=True)
class _Invalid:
    code: int
    subcode: int | None
    message: str


@dataclass
class TokenHealth:
    """Token expiry and validity, and each page's webhook subscription. Thread-safe."""

    expiry: dict[str, int] = field(default_factory=dict)
    """Unix time each page token expires at; absent or 0: never."""
    invalid: dict[str, _Invalid] = field(default_factory=dict)
    subscriptions: dict[str, list[tuple[str | None, tuple[str, ...]]]] = field(default_factory=dict)
    """Per page, the subscribed apps (None: our app) and their fields; absent: ours with the defaults."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def expire(self, token: str, at: float) -> None:
        """Make ``token`` expire at Unix time ``at`` (0: never)."""
        with self._lock:
            self.expiry[token] = int(at)

    def invalidate(
        self,
        token: str,
        *,
        subcode: int | None = 460,
        message: str = (
            "Error validating access token: The session has been invalidated because the user changed their "
            "password or Facebook has changed the session for security reasons."
        ),
    ) -> None:
        """Make Meta refuse ``token`` (code 190), e.g. after the page admin changed their password."""
        with self._lock:
            self.invalid[token] = _Invalid(190, subcode, message)

    def unsubscribe(self, page_id: str) -> None:
        """Remove every app's webhook subscription from ``page_id`` (``subscribed_apps`` answers ``[]``)."""
        with self._lock:
            self.subscriptions[page_id] = []

    def subscribe(self, page_id: str, fields: tuple[str, ...] = DEFAULT_FIELDS, *, app_id: str | None = None) -> None:
        """Subscribe our app (or ``app_id``) to ``page_id``'s webhooks with ``fields``, replacing
        what the page had."""
        with self._lock:
            self.subscriptions[page_id] = [(app_id, tuple(fields))]

    def reset(self) -> None:
        """Every token valid for ever, every page subscribed to our app again."""
        with self._lock:
            self.expiry.clear()
            self.invalid.clear()
            self.subscriptions.clear()

    def refusal(self, token: str) -> _Invalid | None:
        """Why Meta refuses ``token`` now (invalidated or expired), or None."""
        with self._lock:
            invalid = self.invalid.get(token)
            expires = self.expiry.get(token, 0)
        if invalid is not None:
            return invalid
        if expires and expires <= time.time():
            expired = time.strftime("%A, %d-%b-%y %H:%M:%S UTC", time.gmtime(expires))
            return _Invalid(190, 463, f"Error validating access token: Session has expired on {expired}.")
        return None

    def apps(self, page_id: str, our_app: str) -> list[dict[str, Any]]:
        """What ``subscribed_apps`` lists for ``page_id``."""
        with self._lock:
            found = self.subscriptions.get(page_id)
        entries = [(None, DEFAULT_FIELDS)] if found is None else found
        return [
            {
                "category": "Business",
                "link": "https://crm.example.com/",
                "name": APP_NAME if app_id is None else f"App {app_id}",
                "id": our_app if app_id is None else app_id,
                "subscribed_fields": list(fields),
            }
            for app_id, fields in entries
        ]


class _HealthRequest(BaseModel):
    unsubscribe: list[str] = Field(default_factory=list, description="page ids to unsubscribe")
    subscribe: dict[str, list[str]] = Field(default_factory=dict, description="page id → fields")
    expire: dict[str, float] = Field(default_factory=dict, description="page token → Unix expiry (0: never)")
    invalidate: list[str] = Field(default_factory=list, description="page tokens Meta refuses from now on")


def _presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.query_params.get("access_token") or None


def add_health_routes(app: FastAPI, fake: FakeGraph, guard: Guard, error: ErrorAnswer) -> None:
    """Register ``debug_token``, ``subscribed_apps`` and ``/_fake/health`` on the fake's app
    (before its ``/{version}/{object_id}`` route, which would otherwise take ``debug_token``)."""
    health = fake.health

    @app.post("/_fake/health")
    async def configure_health(spec: _HealthRequest) -> dict[str, bool]:
        for page_id in spec.unsubscribe:
            health.unsubscribe(page_id)
        for page_id, fields in spec.subscribe.items():
            health.subscribe(page_id, tuple(fields))
        for token, at in spec.expire.items():
            health.expire(token, at)
        for token in spec.invalidate:
            health.invalidate(token)
        return {"ok": True}

    @app.get("/{version}/debug_token")
    async def debug_token(version: str, request: Request) -> JSONResponse:
        # The token on this call is the app's, not a page's: the usual guard would refuse it.
        from .graph_fake import RecordedRequest  # the fake imports this module first

        path = request.url.path
        app_token = _presented_token(request)
        query = {k: v for k, v in request.query_params.items() if k not in ("access_token", "input_token")}
        fake._record(RecordedRequest(request.method, path, query, app_token))
        scripted = fake._scripted(path)
        if scripted is not None:
            return JSONResponse(scripted.body(), status_code=scripted.http_status, headers=scripted.headers("app"))
        if app_token is None:
            return error(104)
        if app_token != f"{fake.app_id}|{fake.app_secret}":
            return error(190, message="Invalid OAuth access token signature.")
        input_token = request.query_params.get("input_token")
        if not input_token:
            return error(100, message="(#100) The parameter input_token is required")
        refusal = health.refusal(input_token)
        if refusal is None and fake.tokens is not None and input_token not in fake.tokens:
            refusal = _Invalid(190, None, "Invalid OAuth access token - Cannot parse access token")
        now = int(time.time())
        data: dict[str, Any] = {"app_id": str(fake.app_id), "type": "PAGE", "application": APP_NAME}
        if refusal is not None:
            problem: dict[str, Any] = {"code": refusal.code, "message": refusal.message}
            if refusal.subcode is not None:
                problem["subcode"] = refusal.subcode
            data.update(error=problem, is_valid=False, scopes=[])
        else:
            with health._lock:
                expires = health.expiry.get(input_token, 0)
            data.update(
                data_access_expires_at=now + 90 * 86400,
                expires_at=expires,
                is_valid=True,
                issued_at=now - 86400,
                scopes=list(SCOPES),
            )
        return JSONResponse({"data": data})

    @app.get("/{version}/{page_id}/subscribed_apps")
    async def subscribed_apps(version: str, page_id: str, request: Request) -> JSONResponse:
        _, failure = await guard(request, request.url.path, page_id)
        if failure is not None:
            return failure
        token = _presented_token(request)
        refusal = health.refusal(token) if token is not None else None
        if refusal is not None:
            return error(refusal.code, message=refusal.message, subcode=refusal.subcode)
        return JSONResponse({"data": health.apps(page_id, str(fake.app_id))})
