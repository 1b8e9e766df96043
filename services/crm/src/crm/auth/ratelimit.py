"""Login throttling per e-mail and per client address.

Counters live in Redis so every replica shares them: a fixed 15-minute window per key,
incremented *before* the password is checked (parallel guesses cannot slip past the
limit) and given back after a successful login (colleagues behind one office address
are not locked out by each other's logins; only failures accumulate).

When Redis does not answer, an in-process limiter with the same rules takes over for a
few seconds at a time: logins stay protected per replica and never fail with a 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from jggl_common.logs import get_logger

log = get_logger(__name__)

WINDOW_SECONDS = 15 * 60


class _LocalWindows:
    """Fixed windows in process memory, bounded in size."""

    def __init__(self, window: int, max_keys: int = 100_000) -> None:
        self._window = window
        self._max_keys = max_keys
        self._counts: dict[str, tuple[int, float]] = {}

    def hit(self, key: str) -> tuple[int, int]:
        now = time.monotonic()
        count, started = self._counts.get(key, (0, now))
        if now - started >= self._window:
            count, started = 0, now
        if key not in self._counts and len(self._counts) >= self._max_keys:
            self._counts = {k: v for k, v in self._counts.items() if now - v[1] < self._window}
            if len(self._counts) >= self._max_keys:
                self._counts.clear()
        self._counts[key] = (count + 1, started)
        return count + 1, max(1, int(self._window - (now - started)))

    def forgive(self, key: str) -> None:
        if key in self._counts:
            count, started = self._counts[key]
            self._counts[key] = (max(0, count - 1), started)


class LoginLimiter:
    """Counts login attempts and says when a caller must wait."""

    def __init__(
        self,
        redis: Redis,
        limit: int,
        *,
        window: int = WINDOW_SECONDS,
        prefix: str = "crm:login",
        timeout: float = 0.5,
        retry_redis_after: float = 5.0,
    ) -> None:
        self._redis = redis
        self._limit = limit
        self._window = window
        self._prefix = prefix
        self._timeout = timeout
        self._retry_redis_after = retry_redis_after
        self._redis_down_until = 0.0
        self._local = _LocalWindows(window)

    def keys(self, email: str, address: str) -> list[str]:
        """The counters one attempt touches (the e-mail is hashed: keys are not a user list)."""
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        return [f"{self._prefix}:email:{digest}", f"{self._prefix}:addr:{address}"]

    async def hit(self, keys: Sequence[str]) -> int | None:
        """Count one attempt on every key; seconds to wait if any is over the limit, else None."""
        counts = await self._redis_hit(keys)
        if counts is None:
            counts = [self._local.hit(key) for key in keys]
        waits = [ttl for count, ttl in counts if count > self._limit]
        return max(waits) if waits else None

    async def forgive(self, keys: Sequence[str]) -> None:
        """Give back one attempt on every key (the login succeeded)."""
        if self._redis_usable():
            try:
                async with asyncio.timeout(self._timeout):
                    pipe = self._redis.pipeline(transaction=False)
                    for key in keys:
                        pipe.decr(key)
                    await pipe.execute()
                return
            except (RedisError, OSError, TimeoutError) as exc:
                self._redis_failed(exc)
        for key in keys:
            self._local.forgive(key)

    def _redis_usable(self) -> bool:
        return time.monotonic() >= self._redis_down_until

    def _redis_failed(self, exc: BaseException) -> None:
        self._redis_down_until = time.monotonic() + self._retry_redis_after
        log.warning("login throttling falls back to this process: Redis unavailable", error=repr(exc))

    async def _redis_hit(self, keys: Sequence[str]) -> list[tuple[int, int]] | None:
        if not self._redis_usable():
            return None
        try:
            async with asyncio.timeout(self._timeout):
                pipe = self._redis.pipeline(transaction=True)
                for key in keys:
                    pipe.incr(key)
                    pipe.expire(key, self._window, nx=True)
                    pipe.ttl(key)
                results = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._redis_failed(exc)
            return None
        counts = []
        for index in range(len(keys)):
            count, _, ttl = results[index * 3 : index * 3 + 3]
            counts.append((int(count), int(ttl) if int(ttl) > 0 else self._window))
        return counts
