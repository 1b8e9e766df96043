"""The managers' API limited per caller, before any endpoint runs.

Who the caller is comes from the request's credentials alone (the token's signature, no
database read): a valid bearer token counts against its user's API-client rate, a valid
browser session cookie against the user's (higher) browser rate, and anything else
(no credentials, or credentials that do not verify) against the client address's rate.
A token's user is counted under their own key whichever address they call from, and one
user's calls never use up a colleague's behind the same office address.

Only ``/api/...`` is counted. The live event stream (``/api/events``, one long connection
per open page) is not (its own cap is the number of streams open, :mod:`crm.limits.streams`);
neither are the web app's files, ``/healthz``, ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from crm.auth.browser import SESSION_COOKIE
from crm.auth.tokens import InvalidToken, Tokens

from .rates import Rate, RateLimiter

LIMITED = Counter(
    "jggl_crm_api_rate_limited_total",
    "API requests refused with 429: scope token (a user's API client), browser (a user's web app) or address",
    ["scope"],
)

TOO_MANY_REQUESTS = "Too many requests in a short time"
"""The sentence of a refusal; ``Retry-After`` says how long to wait (the web app shows both)."""

API_PREFIX = "/api/"
NOT_COUNTED = frozenset({"/api/events"})
"""API paths outside the per-request limits (long-lived connections)."""


def counted(path: str) -> bool:
    """Whether requests to ``path`` count against the API rate limits."""
    return path.startswith(API_PREFIX) and path not in NOT_COUNTED


@dataclass(frozen=True)
class CallerRates:
    """The rate of each kind of caller."""

    token: Rate
    """A user calling with a bearer token (API clients, scripts)."""
    browser: Rate
    """A user calling from the web app (the session cookie)."""
    address: Rate
    """Requests without valid credentials, per client address."""


class ApiRateLimits:
    """ASGI middleware answering 429 with ``Retry-After`` to a caller over its rate."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        tokens: Tokens,
        rates: CallerRates,
        client_address: Callable[[HTTPConnection], str],
    ) -> None:
        self.app = app
        self._limiter = limiter
        self._tokens = tokens
        self._rates = rates
        self._client_address = client_address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not counted(scope["path"]):
            await self.app(scope, receive, send)
            return
        kind, key, rate = self._caller(HTTPConnection(scope))
        wait = await self._limiter.wait_seconds(key, rate)
        if wait is None:
            await self.app(scope, receive, send)
            return
        LIMITED.labels(kind).inc()
        refusal = JSONResponse(
            {"detail": TOO_MANY_REQUESTS},
            status_code=429,
            headers={"Retry-After": str(wait)},
        )
        await refusal(scope, receive, send)

    def _caller(self, connection: HTTPConnection) -> tuple[str, str, Rate]:
        """The kind of caller, the key they are counted under, and their rate."""
        scheme, _, credentials = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials:
            user_id = self._user_id(credentials.strip())
            if user_id is not None:
                return "token", f"token:{user_id}", self._rates.token
        else:
            cookie = connection.cookies.get(SESSION_COOKIE)
            user_id = self._user_id(cookie) if cookie else None
            if user_id is not None:
                return "browser", f"browser:{user_id}", self._rates.browser
        return "address", f"addr:{self._client_address(connection)}", self._rates.address

    def _user_id(self, token: str) -> int | None:
        try:
            return self._tokens.verify(token).user_id
        except InvalidToken:
            return None
