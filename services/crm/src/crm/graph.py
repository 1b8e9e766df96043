"""Meta Graph API client: the one place crm talks HTTP to Meta.

The base URL and version come from configuration (``META_GRAPH_URL``,
``META_GRAPH_VERSION``), which is how the sandbox's fake and the tests stand in for
Meta. Errors are decided by Meta's ``error.code``, never by the HTTP status
(docs/protocols.md): :class:`GraphError` says whether a failure is throttling (retry with
backoff), an invalid token (alert the admin) or something retrying will not fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from crm.config import CrmSettings
from jggl_common.numbers import loose_int

__all__ = [
    "AUTH_CODES",
    "THROTTLING_CODES",
    "GraphClient",
    "GraphError",
    "GraphPage",
    "Profile",
    "SendResult",
    "regain_seconds",
]

THROTTLING_CODES = frozenset({4, 17, 32, 613, 80006})
"""Rate-limit codes: the same call succeeds later."""
AUTH_CODES = frozenset({190})
"""The access token is invalid or expired: only a new token helps."""
# "Unknown error" and "service temporarily unavailable": Meta's own hiccups.
_TRANSIENT_CODES = frozenset({1, 2})

_PROFILE_FIELDS: dict[str, str] = {
    "messenger": "first_name,last_name,profile_pic",
    "instagram": "name,username,profile_pic",
}


class GraphError(Exception):
    """A failed Graph API call, with Meta's error fields when the answer had them.

    ``code`` is ``None`` when Meta could not be reached or did not answer with its
    error object (network failure, a proxy's 502...); such failures are transient.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        type_: str | None = None,
        fbtrace_id: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.type = type_
        self.fbtrace_id = fbtrace_id
        self.http_status = http_status
        self.retry_after = retry_after
        """Seconds Meta says to wait before calling again (usage headers), when it said so."""

    def __str__(self) -> str:
        parts = [self.message]
        if self.code is not None:
            parts.append(f"code={self.code}")
        if self.subcode is not None:
            parts.append(f"subcode={self.subcode}")
        if self.http_status is not None:
            parts.append(f"http={self.http_status}")
        return " ".join(parts)

    @property
    def is_throttling(self) -> bool:
        """Meta asks us to slow down (codes 4, 17, 32, 613, 80006): retry with backoff."""
        return self.code in THROTTLING_CODES

    @property
    def is_auth(self) -> bool:
        """The page token is invalid or expired (code 190): the admin must reconnect the channel."""
        return self.code in AUTH_CODES

    @property
    def is_transient(self) -> bool:
        """Retrying later can succeed: throttling, Meta's own outages, or no proper answer at all."""
        if self.is_throttling or self.code in _TRANSIENT_CODES:
            return True
        return self.code is None and (self.http_status is None or self.http_status >= 500 or self.http_status == 429)

    @classmethod
    def from_response(cls, response: httpx.Response) -> GraphError:
        """Read Meta's ``{"error": {...}}`` object from a failed answer."""
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        retry_after = regain_seconds(response.headers)
        if not isinstance(error, dict):
            return cls(
                f"HTTP {response.status_code} without a Graph error object",
                http_status=response.status_code,
                retry_after=retry_after,
            )
        return cls(
            str(error.get("message") or "Graph API error"),
            code=loose_int(error.get("code")),
            subcode=loose_int(error.get("error_subcode")),
            type_=str(error["type"]) if error.get("type") is not None else None,
            fbtrace_id=str(error["fbtrace_id"]) if error.get("fbtrace_id") is not None else None,
            http_status=response.status_code,
            retry_after=retry_after,
        )


_USAGE_HEADERS = ("x-business-use-case-usage", "x-app-usage", "x-page-usage", "x-ad-account-usage")


def regain_seconds(headers: Mapping[str, str]) -> float | None:
    """How long Meta says to wait, from its usage headers (``estimated_time_to_regain_access``, in
    minutes, anywhere in ``X-Business-Use-Case-Usage`` / ``X-App-Usage``...) or ``Retry-After``.

    The longest wait any header names wins; ``None`` when no header names one. Unreadable
    headers are ignored: they only refine a backoff that happens anyway.
    """
    minutes: list[float] = []
    for name in _USAGE_HEADERS:
        raw = headers.get(name)
        if not raw:
            continue
        try:
            _collect_regain(json.loads(raw), minutes)
        except ValueError:
            continue
    waits = [m * 60.0 for m in minutes]
    retry_after = headers.get("retry-after")
    seconds = loose_int(retry_after.strip()) if retry_after else None
    if seconds is not None:
        waits.append(float(seconds))
    return max(waits) if waits else None


def _collect_regain(value: Any, found: list[float], depth: int = 0) -> None:
    # X-Business-Use-Case-Usage is {"<id>": [{"type": ..., "estimated_time_to_regain_access": N}, ...]};
    # X-App-Usage is a flat object. Walk both shapes without trusting either.
    if depth > 4:
        return
    if isinstance(value, dict):
        regain = value.get("estimated_time_to_regain_access")
        if isinstance(regain, (int, float)) and not isinstance(regain, bool) and regain >= 0:
            found.append(float(regain))
        for child in value.values():
            if isinstance(child, (dict, list)):
                _collect_regain(child, found, depth + 1)
    elif isinstance(value, list):
        for child in value:
            _collect_regain(child, found, depth + 1)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the Send API answered: the customer's id and Meta's id of the new message."""

    recipient_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class GraphPage:
    """One page of a Graph listing and the cursor of the next (None after the last)."""

    items: list[dict[str, Any]]
    after: str | None


@dataclass(frozen=True, slots=True)
class Profile:
    """What Meta tells us about a customer. Any field may be missing (privacy settings)."""

    name: str | None = None
    username: str | None = None
    avatar_url: str | None = None


class GraphClient:
    """An async Graph API client over httpx; one per process, closed with :meth:`aclose`."""

    def __init__(
        self,
        base_url: str,
        version: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.version = version if version.startswith("v") else f"v{version}"
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={"Accept": "application/json"},
        )

    @classmethod
    def from_settings(cls, settings: CrmSettings, **kwargs: Any) -> GraphClient:
        """A client for ``META_GRAPH_URL`` and ``META_GRAPH_VERSION``."""
        return cls(settings.meta_graph_url, settings.meta_graph_version, **kwargs)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Call ``/{version}/{path}`` with ``token`` and return the JSON object Meta answered.

        The token travels in the ``Authorization`` header, so it never lands in access
        logs the way a query string does. Raises :class:`GraphError` on any failure.
        """
        url = f"/{self.version}/{path.lstrip('/')}"
        try:
            response = await self._http.request(
                method, url, params=params, json=json, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            raise GraphError(f"Graph API unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise GraphError.from_response(response)
        try:
            body = response.json()
        except ValueError:
            raise GraphError("Graph API answered with invalid JSON", http_status=response.status_code) from None
        if not isinstance(body, dict):
            raise GraphError("Graph API answered with a non-object", http_status=response.status_code)
        if isinstance(body.get("error"), dict):
            raise GraphError.from_response(response)
        return body

    async def send_message(
        self,
        page_id: str,
        recipient_id: str,
        message: dict[str, Any],
        *,
        token: str,
        messaging_type: str = "RESPONSE",
        tag: str | None = None,
    ) -> SendResult:
        """Send ``message`` (``{"text": ...}`` or ``{"attachment": ...}``) to a PSID or IGSID.

        ``messaging_type`` is ``RESPONSE`` inside the 24 h window, ``MESSAGE_TAG`` with
        ``tag="HUMAN_AGENT"`` up to 7 days. Raises :class:`GraphError` when Meta refuses.
        """
        body: dict[str, Any] = {
            "recipient": {"id": recipient_id},
            "messaging_type": messaging_type,
            "message": message,
        }
        if tag is not None:
            body["tag"] = tag
        answer = await self.request("POST", f"{page_id}/messages", token=token, json=body)
        message_id = answer.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise GraphError("Send API answered without a message_id", http_status=200)
        return SendResult(recipient_id=str(answer.get("recipient_id") or recipient_id), message_id=message_id)

    async def get_profile(self, platform: Literal["messenger", "instagram"] | str, user_id: str, token: str) -> Profile:
        """The customer's name, username and picture (PSID for Messenger, IGSID for Instagram)."""
        fields = _PROFILE_FIELDS.get(platform)
        if fields is None:
            raise ValueError(f"unknown platform {platform!r}")
        body = await self.request("GET", user_id, token=token, params={"fields": fields})
        if platform == "messenger":
            full = " ".join(part for part in (_text(body.get("first_name")), _text(body.get("last_name"))) if part)
            return Profile(name=full or _text(body.get("name")), avatar_url=_text(body.get("profile_pic")))
        return Profile(
            name=_text(body.get("name")),
            username=_text(body.get("username")),
            avatar_url=_text(body.get("profile_pic")),
        )

    async def debug_token(self, input_token: str, *, app_id: str, app_secret: str) -> dict[str, Any]:
        """What Meta knows of a page token (``data``: ``is_valid``, ``expires_at`` with 0 for
        never, ``scopes``, ``error`` when invalid). Asked with the app token
        ``<app_id>|<app_secret>``, so a :class:`GraphError` here is about the app's
        credentials or Meta's availability, never about the page token itself."""
        body = await self.request(
            "GET", "debug_token", token=f"{app_id}|{app_secret}", params={"input_token": input_token}
        )
        data = body.get("data")
        if not isinstance(data, dict):
            raise GraphError("debug_token answered without a data object", http_status=200)
        return data

    async def subscribed_apps(self, page_id: str, *, token: str) -> list[dict[str, Any]]:
        """The apps receiving ``page_id``'s webhooks, each with ``id`` and ``subscribed_fields``
        (asked with the page token: code 190 means that token is refused)."""
        body = await self.request("GET", f"{page_id}/subscribed_apps", token=token)
        data = body.get("data")
        if not isinstance(data, list):
            raise GraphError("subscribed_apps answered without a data list", http_status=200)
        return [app for app in data if isinstance(app, dict)]

    async def list_page(self, path: str, *, token: str, params: dict[str, str], after: str | None = None) -> GraphPage:
        """One page of a Graph listing (``{"data": [...], "paging": {"cursors": {"after"}, "next"}}``);
        pass :attr:`GraphPage.after` back for the next one (None: that was the last)."""
        body = await self.request("GET", path, token=token, params={**params, **({"after": after} if after else {})})
        data = body.get("data")
        items = [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []
        paging = body.get("paging")
        paging = paging if isinstance(paging, dict) else {}
        cursors = paging.get("cursors")
        following = cursors.get("after") if isinstance(cursors, dict) and paging.get("next") and items else None
        return GraphPage(items, following if isinstance(following, str) and following else None)


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None
