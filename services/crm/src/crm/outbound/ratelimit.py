"""Send API rate limits per page: a token bucket shared by every replica through Redis.

Meta allows about 300 Send API calls per second per Page and 100 per Instagram account
(docs/protocols.md); we stay below that (250 and 90 by default, configurable). The bucket
lives in Redis and is updated by one Lua script with Redis's own clock, so all replicas
draw from the same bucket. Each call reserves a token and learns how long to wait for
it, so callers queue in order instead of polling.

When Redis does not answer, each replica falls back to a bucket of its own (logged) and
asks Redis again only every few seconds, so an outage costs no latency per send: sends
keep flowing, at worst N replicas times the rate, and Meta's throttling answers
(retried with backoff by the sender) remain the backstop.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from jggl_common.logs import get_logger

__all__ = ["SendRateLimiter"]

log = get_logger(__name__)

# KEYS[1] bucket; ARGV: rate (tokens/s), burst (tokens). Returns the wait in microseconds.
# The bucket may go negative: a negative balance is the queue of reservations ahead.
_RESERVE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + (now - at) * rate / 1000000) - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
if tokens >= 0 then
  return 0
end
return math.ceil(-tokens / rate * 1000000)
"""


@dataclass
class _LocalBucket:
    rate: float
    burst: float
    tokens: float
    at: float

    def reserve(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate) - 1
        self.at = now
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class SendRateLimiter:
    """Waits until a Send API call for a page fits in that page's budget."""

    def __init__(
        self,
        redis: Redis | None,
        *,
        prefix: str = "crm:send-rate",
        burst_seconds: float = 0.1,
        timeout: float = 0.5,
        redis_retry_seconds: float = 5.0,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._burst_seconds = burst_seconds
        self._timeout = timeout
        self._local: dict[str, _LocalBucket] = {}
        self._degraded = False
        self._redis_retry_seconds = redis_retry_seconds
        self._redis_again_at = 0.0
        self._script = redis.register_script(_RESERVE) if redis is not None else None

    def _burst(self, rate: float) -> float:
        # A short burst keeps a one-second window well below Meta's ceiling.
        return max(1.0, rate * self._burst_seconds)

    async def acquire(self, key: str, rate: float) -> float:
        """Wait for a token of ``key``'s bucket (``rate`` per second); returns the seconds waited."""
        wait = await self._reserve(key, rate)
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    async def _reserve(self, key: str, rate: float) -> float:
        if self._script is not None and time.monotonic() >= self._redis_again_at:
            try:
                async with asyncio.timeout(self._timeout):
                    micros = await self._script(keys=[f"{self._prefix}:{key}"], args=[rate, self._burst(rate)])
                if self._degraded:
                    self._degraded = False
                    log.info("send rate limit shared through Redis again")
                return int(micros) / 1_000_000
            except Exception as exc:
                self._redis_again_at = time.monotonic() + self._redis_retry_seconds
                if not self._degraded:
                    self._degraded = True
                    log.warning(
                        "Redis unavailable: send rate limit is per replica until it answers",
                        error=f"{type(exc).__name__}: {exc}",
                    )
        now = time.monotonic()
        bucket = self._local.get(key)
        if bucket is None or bucket.rate != rate:
            bucket = self._local[key] = _LocalBucket(rate, self._burst(rate), self._burst(rate), now)
        return bucket.reserve(now)
