"""Per-source-address rate limit for the webhook endpoints.

A token bucket per address, in the process: Redis being down must not stop ingest, and
the limit is a guard against floods, not an accounting tool. With N replicas behind a
balancer the effective limit is up to N times the configured one.
"""

from __future__ import annotations

import time


class RateLimiter:
    """Allows ``per_minute`` requests per key, with bursts up to the same number."""

    def __init__(self, per_minute: int, *, max_keys: int = 100_000) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._max_keys = max_keys

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False when its bucket is empty."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        if len(self._buckets) >= self._max_keys and key not in self._buckets:
            self._evict(now)
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def _evict(self, now: float) -> None:
        # Buckets that have refilled completely carry no information.
        full_after = self._capacity / self._rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()
