"""Request rates shared by every replica: one Redis key per caller, one round trip per request.

Each key holds a *theoretical arrival time* (the generic cell rate algorithm): a request
moves it one interval (a minute divided by the rate) into the future, and is refused when
that would put it more than ``burst`` intervals ahead of now. So a caller may send
``burst`` requests at once and then the rate, and a refusal knows exactly how long to wait.
The check and the update are one Lua script, atomic across replicas, timed by Redis's own
clock (replicas whose clocks disagree still agree on the limit).

When Redis does not answer, requests are let through unchecked (the API stays usable;
``jggl_crm_api_rate_limit_unchecked_total`` counts them) and Redis is tried again a few
seconds later, so a dead Redis costs one timeout per few seconds, not one per request.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jggl_common.logs import get_logger

log = get_logger(__name__)

UNCHECKED = Counter(
    "jggl_crm_api_rate_limit_unchecked_total",
    "API requests let through without a rate check because Redis did not answer",
)

# KEYS[1]: the caller's key. ARGV[1]: interval between requests (ms), ARGV[2]: burst * interval (ms).
# Answers 0 when the request is allowed, else how many milliseconds until it would be.
_GCRA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then
  tat = now
end
local next_tat = tat + interval
if next_tat - now > capacity then
  return next_tat - capacity - now
end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', string.format('%d', next_tat - now))
return 0
"""


@dataclass(frozen=True)
class Rate:
    """``per_minute`` requests a minute on average, up to ``burst`` of them at once; 0 per minute: unlimited."""

    per_minute: int
    burst: int

    @property
    def unlimited(self) -> bool:
        """Whether this rate lets everything through."""
        return self.per_minute <= 0

    @property
    def interval_ms(self) -> int:
        """The time one request uses up."""
        return max(1, round(60_000 / self.per_minute))


class RateLimiter:
    """Counts requests per key in Redis; says how long a caller over its rate must wait."""

    def __init__(self, redis: Redis, *, prefix: str, timeout: float = 0.5, retry_redis_after: float = 5.0) -> None:
        """``prefix`` starts every key (``<prefix>:<key>``); Redis is given ``timeout`` seconds an answer."""
        self._redis = redis
        self.prefix = prefix
        self._timeout = timeout
        self._retry_redis_after = retry_redis_after
        self._redis_down_until = 0.0
        self._script = redis.register_script(_GCRA)

    async def wait_seconds(self, key: str, rate: Rate) -> int | None:
        """Count one request on ``key``: None if allowed, else whole seconds to wait (at least 1).

        Never raises: without Redis every request is allowed (and counted as unchecked).
        """
        if rate.unlimited:
            return None
        if time.monotonic() < self._redis_down_until:
            UNCHECKED.inc()
            return None
        interval = rate.interval_ms
        try:
            async with asyncio.timeout(self._timeout):
                wait_ms = await self._script(keys=[f"{self.prefix}:{key}"], args=[interval, interval * rate.burst])
        except (RedisError, OSError, TimeoutError) as exc:
            self._redis_down_until = time.monotonic() + self._retry_redis_after
            UNCHECKED.inc()
            log.warning("API rate limits unchecked for a few seconds: Redis unavailable", error=repr(exc))
            return None
        wait = int(wait_ms)
        return max(1, math.ceil(wait / 1000)) if wait > 0 else None
