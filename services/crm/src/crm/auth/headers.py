"""Security headers on every answer crm gives: what a browser may load, frame and send on.

The web app (``web/dist``) is one module script and one stylesheet from ``/assets``, no
inline script or style, talking only to its own origin (the API and the event stream), and
it shows customers' pictures, videos and voice messages straight from Meta's CDN. So:

- ``Content-Security-Policy``: scripts, styles, fonts and connections from this origin only;
  images and media also from any ``https:`` address (and ``data:`` images); no plugins, no
  ``<base>``, forms post only here, and no page may frame crm (``frame-ancestors 'none'``).
  The API docs pages (``/docs``, ``/redoc``, see ``API_DOCS``) load Swagger UI and ReDoc
  from their CDN with inline start-up code, and get a policy of their own that allows that.
- ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` (for browsers that do not
  know ``frame-ancestors``), ``Referrer-Policy: no-referrer`` (opening a customer's file
  does not tell the CDN which deal it came from), ``Cross-Origin-Opener-Policy: same-origin``.
- ``Strict-Transport-Security`` when the request came over TLS (directly, or through a
  proxy trusted by ``FORWARDED_ALLOW_IPS`` that says so in ``X-Forwarded-Proto``), with
  ``HSTS_MAX_AGE_SECONDS`` (0 sends none). Never over plain HTTP, where it means nothing.

A header the route set itself is left as it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["APP_POLICY", "DOCS_POLICY", "SecurityHeaders"]

APP_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' https: data:",
        "media-src 'self' https:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
"""The web app's and the API's Content-Security-Policy."""

DOCS_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net",
        "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com",
        "font-src 'self' https://fonts.gstatic.com",
        "img-src 'self' https: data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
"""The policy of the Swagger UI and ReDoc pages (their CDN and inline start-up scripts)."""

DOCS_PATHS = ("/docs", "/redoc")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SecurityHeaders:
    """ASGI middleware adding the headers above to every HTTP answer."""

    def __init__(self, app: ASGIApp, *, hsts_max_age_seconds: int, docs: bool = True) -> None:
        """``docs``: whether the API docs pages are served (``API_DOCS``), and so get their policy."""
        self.app = app
        self.docs = docs
        common = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        hsts = [(b"strict-transport-security", f"max-age={hsts_max_age_seconds}".encode())]
        self._headers: dict[tuple[bool, bool], list[tuple[bytes, bytes]]] = {}
        for is_docs in (False, True):
            base = [(b"content-security-policy", (DOCS_POLICY if is_docs else APP_POLICY).encode()), *common]
            self._headers[is_docs, False] = base
            self._headers[is_docs, True] = base + hsts if hsts_max_age_seconds > 0 else base

    def headers_for(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The headers an answer to this request gets."""
        path = str(scope.get("path", ""))
        docs = self.docs and any(path == prefix or path.startswith(prefix + "/") for prefix in DOCS_PATHS)
        return self._headers[docs, scope.get("scheme") == "https"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.headers_for(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in extra if name not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
