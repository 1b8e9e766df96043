"""Limits on the managers' API: request rates per user and per client address, and live
event streams open at once per user.

See :mod:`crm.limits.rates` for how requests are counted (Redis, shared by every replica,
let through when Redis is down), :mod:`crm.limits.middleware` for who is counted how, and
:mod:`crm.limits.streams` for the live streams (the same Redis, with leases).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from crm.auth.tokens import Tokens
from crm.config import CrmSettings

from .middleware import LIMITED, ApiRateLimits, CallerRates, counted
from .openapi import document_rate_limits
from .rates import UNCHECKED, Rate, RateLimiter
from .streams import LiveStreamSlots, StreamSlot, StreamSlots

__all__ = [
    "LIMITED",
    "UNCHECKED",
    "ApiRateLimits",
    "CallerRates",
    "LiveStreamSlots",
    "Rate",
    "RateLimiter",
    "StreamSlot",
    "StreamSlots",
    "caller_rates",
    "counted",
    "document_rate_limits",
    "install_rate_limits",
]


def caller_rates(settings: CrmSettings) -> CallerRates:
    """The configured rates (``API_RATE_*``)."""
    return CallerRates(
        token=Rate(settings.api_rate_per_minute, settings.api_rate_burst),
        browser=Rate(settings.api_browser_rate_per_minute, settings.api_browser_rate_burst),
        address=Rate(settings.api_address_rate_per_minute, settings.api_address_rate_burst),
    )


def install_rate_limits(
    app: FastAPI,
    settings: CrmSettings,
    redis: Redis,
    tokens: Tokens,
    *,
    client_address: Callable[[HTTPConnection], str],
    timeout: float,
) -> None:
    """Limit ``app``'s API per caller and say so in its OpenAPI schema (call after the schema is put right).

    Also caps the live event streams each user has open (``LIVE_MAX_STREAMS_PER_USER``), which
    ``GET /api/events`` takes a slot of through :data:`LiveStreamSlots`.
    """
    # Counters of one crm deployment: user ids are only unique within its database schema.
    app.state.live_stream_slots = StreamSlots(
        redis, prefix=f"crm:live:{settings.db_schema}", per_user=settings.live_max_streams_per_user, timeout=timeout
    )
    limiter = RateLimiter(redis, prefix=f"crm:api:{settings.db_schema}", timeout=timeout)
    app.add_middleware(
        ApiRateLimits, limiter=limiter, tokens=tokens, rates=caller_rates(settings), client_address=client_address
    )
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_rate_limits(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
