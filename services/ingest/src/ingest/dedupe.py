"""The long deduplication window in Redis, which ingest must be able to live without.

Keys are checked before publishing and written after JetStream acknowledged, so a key
in Redis always means "this item is durably in the stream". Keys live in one Redis set
per UTC day (``ingest:seen:<yyyymmdd>``, expiring ``ttl`` after its day ends): a batch of
writes is a single ``SADD``, a batch of checks one ``SMISMEMBER`` per day that can hold
them. An item is stored after Meta wrote it, so only the days from its Meta timestamp
(less an hour for clocks that disagree) to today are asked: a retry hours after an
outage asks one or two sets, not every day of the window. Checks of concurrent requests
are coalesced per loop turn, writes every 10 ms.
When Redis fails, ingest stops asking it for a few seconds (a small circuit breaker) and
relies on JetStream's duplicate window and crm's unique keys: webhooks keep being accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from prometheus_client import Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jggl_common.batching import Coalescer
from jggl_common.logs import get_logger

log = get_logger(__name__)

REDIS_UP = Gauge("ingest_redis_available", "1 while the Redis dedupe window is in use, 0 while bypassed")
_FAILURES = (RedisError, OSError, TimeoutError)
_DAY = 86_400
# Meta's clock and ours may disagree: a key is looked for from this long before its timestamp.
_CLOCK_MARGIN_MS = 3_600_000


class Deduper:
    """``seen`` / ``remember`` over day buckets kept ``ttl_seconds`` after their day."""

    def __init__(self, redis: Redis, ttl_seconds: int, *, timeout: float, cooldown: float = 5.0) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._timeout = timeout
        self._cooldown = cooldown
        self._down_until = 0.0
        self._lookups: Coalescer[tuple[str, int], bool] = Coalescer(self._ask_day_sets)
        self._to_remember: list[str] = []
        self._writes: set[asyncio.Task[None]] = set()
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

    async def seen(self, keys: Sequence[str], written_ms: Sequence[int | None] | None = None) -> list[bool]:
        """Which of ``keys`` were already accepted; all False when Redis is unusable.

        ``written_ms`` are the items' Meta timestamps (None: unknown, the whole window is asked).
        """
        if not keys or not self.available:
            return [False] * len(keys)
        stamps = written_ms if written_ms is not None else [None] * len(keys)
        try:
            return await self._lookups.submit(
                [
                    (key, 0 if at is None else (at - _CLOCK_MARGIN_MS) // 1000 // _DAY)
                    for key, at in zip(keys, stamps, strict=True)
                ]
            )
        except _FAILURES as exc:
            self._trip(exc)
            return [False] * len(keys)

    def _bucket(self, day: int) -> str:
        return "ingest:seen:" + time.strftime("%Y%m%d", time.gmtime(day * _DAY))

    async def _ask_day_sets(self, lookups: list[tuple[str, int]]) -> list[bool]:
        today = int(time.time() // _DAY)
        # From the earliest day any of them can have been stored on, within the window.
        first = min(max(min(day for _, day in lookups), today - self._ttl // _DAY - 1), today)
        keys = [key for key, _ in lookups]
        async with asyncio.timeout(self._timeout):
            if first == today:
                # Items from today alone (the usual retry after an outage): one command,
                # without a pipeline's own cost (about a fifth of the call's CPU).
                answers = [await self._redis.smismember(self._bucket(today), keys)]
            else:
                pipe = self._redis.pipeline(transaction=False)
                for day in range(first, today + 1):
                    pipe.smismember(self._bucket(day), keys)
                answers = await pipe.execute()
        REDIS_UP.set(1)
        return [any(answer[i] for answer in answers) for i in range(len(keys))]

    def remember(self, keys: Sequence[str]) -> None:
        """Record ``keys`` as accepted, in the background: the answer to Meta never waits on it."""
        if not keys or not self.available:
            return
        if not self._to_remember:
            # Writes are not on the answer's path: gather a few milliseconds of them.
            asyncio.get_running_loop().call_later(0.01, self._write)
        self._to_remember.extend(keys)

    def _write(self) -> None:
        keys, self._to_remember = self._to_remember, []
        task = asyncio.get_running_loop().create_task(self._set(keys))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _set(self, keys: list[str]) -> None:
        today = int(time.time() // _DAY)
        bucket = self._bucket(today)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.sadd(bucket, *keys)
            pipe.expireat(bucket, (today + 1) * _DAY + self._ttl)
            async with asyncio.timeout(self._timeout * 4):
                await pipe.execute()
        except _FAILURES as exc:
            self._trip(exc)

    async def drain(self) -> None:
        """Wait for pending writes (used at shutdown)."""
        if self._writes:
            await asyncio.wait(self._writes, timeout=2)
