"""The per-page Send API budget, shared by replicas through Redis."""

from __future__ import annotations

import asyncio
import secrets
import time

from redis.asyncio import Redis

from crm.outbound.ratelimit import SendRateLimiter
from jggl_common.testing import TEST_REDIS_URL, free_port


async def test_two_replicas_draw_from_one_bucket_per_page() -> None:
    redis = Redis.from_url(TEST_REDIS_URL)
    prefix = "test:send-rate:" + secrets.token_hex(4)
    replicas = [SendRateLimiter(redis, prefix=prefix), SendRateLimiter(redis, prefix=prefix)]
    try:
        started = time.monotonic()
        await asyncio.gather(*(replicas[n % 2].acquire("messenger:1", 20.0) for n in range(12)))
        elapsed = time.monotonic() - started
        # A burst of 2, then 20 per second across both replicas: 10 more take half a second.
        assert elapsed >= 0.45
        assert elapsed < 2.0
        # Another page has a budget of its own.
        started = time.monotonic()
        await replicas[0].acquire("messenger:2", 20.0)
        assert time.monotonic() - started < 0.1
    finally:
        await redis.aclose()


async def test_without_redis_each_replica_still_keeps_to_the_rate() -> None:
    unreachable = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    limiter = SendRateLimiter(unreachable, timeout=0.3)
    try:
        started = time.monotonic()
        for _ in range(6):
            await limiter.acquire("instagram:1", 20.0)
        assert time.monotonic() - started >= 0.2
    finally:
        await unreachable.aclose()
