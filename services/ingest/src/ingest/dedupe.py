"""The long deduplication window in Redis, which ingest must be able to live without.

Keys are checked before publishing and written after JetStream acknowledged, so a key
in Redis always means "this item is durably in the stream". When Redis fails, ingest
stops asking it for a few seconds (a small circuit breaker) and relies on JetStream's
duplicate window and crm's unique keys: webhooks keep being accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from prometheus_client import Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jggl_common.logs import get_logger

log = get_logger(__name__)

REDIS_UP = Gauge("ingest_redis_available", "1 while the Redis dedupe window is in use, 0 while bypassed")


class Deduper:
    """``seen`` / ``remember`` over Redis keys ``ingest:seen:<key>`` with a TTL."""

    def __init__(self, redis: Redis, ttl_seconds: int, *, timeout: float, cooldown: float = 5.0) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._timeout = timeout
        self._cooldown = cooldown
        self._down_until = 0.0
        self._background: set[asyncio.Task[None]] = set()
        REDIS_UP.set(1)

    @property
    def available(self) -> bool:
        """False while the breaker is open."""
        return time.monotonic() >= self._down_until

    def _trip(self, exc: BaseException) -> None:
        if self.available:
            log.warning("redis unavailable, deduplicating with JetStream only", error=f"{type(exc).__name__}: {exc}")
        self._down_until = time.monotonic() + self._cooldown
        REDIS_UP.set(0)

    async def seen(self, keys: Sequence[str]) -> list[bool]:
        """Which of ``keys`` were already accepted; all False when Redis is unusable."""
        if not keys or not self.available:
            return [False] * len(keys)
        try:
            values = await asyncio.wait_for(self._redis.mget([f"ingest:seen:{k}" for k in keys]), self._timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            self._trip(exc)
            return [False] * len(keys)
        REDIS_UP.set(1)
        return [value is not None for value in values]

    def remember(self, keys: Sequence[str]) -> None:
        """Record ``keys`` as accepted, in the background: the answer to Meta never waits on it."""
        if not keys or not self.available:
            return
        task = asyncio.create_task(self._remember(keys))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _remember(self, keys: Sequence[str]) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.set(f"ingest:seen:{key}", b"1", ex=self._ttl)
            await asyncio.wait_for(pipe.execute(), self._timeout * 4)
        except (RedisError, OSError, TimeoutError) as exc:
            self._trip(exc)

    async def drain(self) -> None:
        """Wait for pending ``remember`` writes (used at shutdown)."""
        if self._background:
            await asyncio.wait(self._background, timeout=2)
