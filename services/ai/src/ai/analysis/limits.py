"""What keeps ai within Gemini's quota and away from it while it fails.

* :class:`CallLimiter`: requests per minute (a token bucket that holds one minute's worth,
  so a quiet minute's quota can be spent at once, as Gemini's own quota allows) and calls
  in flight. Both follow the live settings.
* :class:`CircuitBreaker`: after ``failures`` failed calls in a row it opens and nothing
  calls Gemini for ``cooldown`` seconds; then one trial call decides (half-open).

Both are per replica: with N replicas the quota Gemini sees is up to N times the setting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Literal

__all__ = ["BreakerState", "CallLimiter", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class CallLimiter:
    """At most ``per_minute`` calls a minute and ``concurrency`` at once."""

    def __init__(self, per_minute: float, concurrency: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.per_minute = per_minute
        self.concurrency = concurrency
        self._tokens = min(per_minute, 1.0)
        self._updated = clock()
        self._in_flight = 0
        self._changed = asyncio.Condition()

    def configure(self, per_minute: float | None = None, concurrency: int | None = None) -> None:
        """Apply new limits (from the live settings); waiting calls see them at once."""
        if per_minute is not None and per_minute > 0:
            self.per_minute = per_minute
        if concurrency is not None and concurrency > 0:
            self.concurrency = concurrency

    @property
    def in_flight(self) -> int:
        """Calls running right now."""
        return self._in_flight

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.per_minute, self._tokens + (now - self._updated) * self.per_minute / 60.0)
        self._updated = now

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a free slot and a token, hold the slot for the call."""
        async with self._changed:
            while True:
                self._refill()
                if self._in_flight < self.concurrency and self._tokens >= 1.0:
                    self._tokens -= 1.0
                    self._in_flight += 1
                    break
                wait = 60.0 / self.per_minute * (1.0 - self._tokens) if self._tokens < 1.0 else None
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=min(wait, 1.0) if wait else 1.0)
        try:
            yield
        finally:
            async with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()


class CircuitBreaker:
    """Stops calls while they keep failing; lets one through after a cool-down."""

    def __init__(self, failures: int, cooldown: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.threshold = failures
        self.cooldown = cooldown
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> BreakerState:
        """closed (calls go), open (none go), half_open (one trial call may go)."""
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.cooldown else "open"

    def retry_in(self) -> float:
        """Seconds until a call may be tried (0 when one may go now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """Whether a call may go now; in half-open state only one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def succeeded(self) -> None:
        """A call worked: close."""
        self._failures = 0
        self._opened_at = None
        self._trial = False

    def failed(self) -> None:
        """A call failed: count it, open at the threshold (or again after a failed trial)."""
        self._failures += 1
        if self._trial or self._failures >= self.threshold:
            self._opened_at = self._clock()
        self._trial = False
