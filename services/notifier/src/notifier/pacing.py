"""Pacing of the bot's sends to Telegram's limits, so that a 429 is the exception.

Telegram allows about 1 message/s to one chat (a short burst is tolerated) and about 30/s
for the whole bot. :class:`Pacer` keeps a token bucket per chat and one for the bot, in
this process, as "virtual scheduling" (GCRA): each send reserves the next free slot of its
chat's bucket and then of the bot's, and sleeps until the slot comes. A slot is reserved
at once, so concurrent senders queue in order without a lock.

Memory stays bounded: a chat whose bucket has refilled has nothing to remember, so such
idle chats are forgotten whenever the table has doubled since the last sweep.

The buckets are per process: with several notifier replicas each paces itself, so the
bot-wide budget is per replica (set ``TELEGRAM_GLOBAL_PER_SECOND`` to the bot's budget
divided by the replicas); a chat's notifications are usually sent by one replica at a
time, and a 429 that still happens is waited out (``retry_after``).

Metrics (of every pacer of the process, read when Prometheus scrapes):
``jggl_notifier_pacing_waiting{scope}`` the sends asleep for a slot, by the limit they wait
for now (``chat``, then ``global``); ``jggl_notifier_pacing_longest_chat_queue`` the most
sends waiting for one chat (one number, not a series per chat: chats are unbounded);
``jggl_notifier_pacing_wait_seconds`` each send's wait (0 when it went at once).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from functools import partial
from typing import Literal

from prometheus_client import Gauge, Histogram

__all__ = ["LONGEST_CHAT_QUEUE", "WAITING", "WAIT_SECONDS", "Bucket", "Pacer"]

Scope = Literal["chat", "global"]
SCOPES: tuple[Scope, ...] = ("chat", "global")

WAITING = Gauge(
    "jggl_notifier_pacing_waiting",
    "Sends waiting for a send slot, by the limit they wait for (chat, global)",
    ["scope"],
)
LONGEST_CHAT_QUEUE = Gauge("jggl_notifier_pacing_longest_chat_queue", "The most sends waiting for one chat's slot")
WAIT_SECONDS = Histogram(
    "jggl_notifier_pacing_wait_seconds",
    "Seconds each send waited for its chat's and the bot's slot (0: sent at once)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
_PACERS: weakref.WeakSet[Pacer] = weakref.WeakSet()


class Bucket:
    """A token bucket as a theoretical arrival time: ``rate`` per second, ``burst`` at once."""

    __slots__ = ("burst", "interval", "tat")

    def __init__(self, rate: float, burst: int) -> None:
        self.interval = 1.0 / rate
        self.burst = max(1, burst)
        self.tat = 0.0

    def reserve(self, now: float) -> float:
        """Reserve the next slot; the seconds to wait for it (0: now)."""
        tat = max(self.tat, now)
        start = tat - (self.burst - 1) * self.interval
        self.tat = tat + self.interval
        return max(0.0, start - now)

    def idle(self, now: float) -> bool:
        """Full again: forgetting it changes nothing."""
        return self.tat <= now


class Pacer:
    """Waits for a chat's slot and the bot's before a send. A rate of 0 switches a limit off."""

    def __init__(
        self,
        per_chat_per_second: float = 1.0,
        global_per_second: float = 30.0,
        *,
        per_chat_burst: int = 3,
        global_burst: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_chat_per_second = per_chat_per_second
        self.per_chat_burst = per_chat_burst
        self._global = Bucket(global_per_second, global_burst) if global_per_second > 0 else None
        self._chats: dict[int | str, Bucket] = {}
        self._sweep_at = 1024
        self._clock = clock
        self._waiting: dict[Scope, int] = dict.fromkeys(SCOPES, 0)
        self._queues: dict[int | str, int] = {}  # chats with sends waiting: how many
        _PACERS.add(self)

    def __len__(self) -> int:
        """The chats remembered now."""
        return len(self._chats)

    def reserve(self, chat_id: int | str) -> float:
        """Reserve ``chat_id``'s next slot and then the bot's; the seconds to wait."""
        return sum(self._reserve(chat_id))

    async def wait(self, chat_id: int | str) -> float:
        """Sleep until ``chat_id`` may be sent to; the seconds waited."""
        for_chat, for_bot = self._reserve(chat_id)
        wait = for_chat + for_bot
        WAIT_SECONDS.observe(wait)
        if wait <= 0:
            return wait
        self._queues[chat_id] = self._queues.get(chat_id, 0) + 1
        try:
            # The chat's slot comes first, the bot's after it: two sleeps that add up to the
            # one wait, so the gauges say which limit holds the send now.
            phases: tuple[tuple[Scope, float], ...] = (("chat", for_chat), ("global", for_bot))
            for scope, seconds in phases:
                if seconds > 0:
                    self._waiting[scope] += 1
                    try:
                        await asyncio.sleep(seconds)
                    finally:
                        self._waiting[scope] -= 1
        finally:
            left = self._queues.pop(chat_id) - 1
            if left:
                self._queues[chat_id] = left
        return wait

    def waiting(self, scope: Scope) -> int:
        """The sends asleep now for a slot of ``scope``."""
        return self._waiting[scope]

    def longest_queue(self) -> int:
        """The most sends waiting now for one chat (either limit)."""
        return max(self._queues.values(), default=0)

    def _reserve(self, chat_id: int | str) -> tuple[float, float]:
        """Reserve ``chat_id``'s next slot and then the bot's: the seconds to wait for each."""
        now = self._clock()
        for_chat = for_bot = 0.0
        if self.per_chat_per_second > 0:
            bucket = self._chats.get(chat_id)
            if bucket is None:
                if len(self._chats) >= self._sweep_at:
                    self._forget_idle(now)
                bucket = self._chats[chat_id] = Bucket(self.per_chat_per_second, self.per_chat_burst)
            for_chat = bucket.reserve(now)
        if self._global is not None:
            for_bot = self._global.reserve(now + for_chat)
        return for_chat, for_bot

    def _forget_idle(self, now: float) -> None:
        self._chats = {key: bucket for key, bucket in self._chats.items() if not bucket.idle(now)}
        self._sweep_at = max(1024, 2 * len(self._chats))


# Read at scrape time over the pacers alive (a new bot token brings a new bot and pacer).
def _waiting(scope: Scope) -> float:
    return sum(pacer.waiting(scope) for pacer in list(_PACERS))


def _longest_queue() -> float:
    return max((pacer.longest_queue() for pacer in list(_PACERS)), default=0)


for _scope in SCOPES:
    WAITING.labels(_scope).set_function(partial(_waiting, _scope))
LONGEST_CHAT_QUEUE.set_function(_longest_queue)
