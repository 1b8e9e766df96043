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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["Bucket", "Pacer"]


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

    def __len__(self) -> int:
        """The chats remembered now."""
        return len(self._chats)

    def reserve(self, chat_id: int | str) -> float:
        """Reserve ``chat_id``'s next slot and then the bot's; the seconds to wait."""
        now = self._clock()
        wait = 0.0
        if self.per_chat_per_second > 0:
            bucket = self._chats.get(chat_id)
            if bucket is None:
                if len(self._chats) >= self._sweep_at:
                    self._forget_idle(now)
                bucket = self._chats[chat_id] = Bucket(self.per_chat_per_second, self.per_chat_burst)
            wait = bucket.reserve(now)
        if self._global is not None:
            wait += self._global.reserve(now + wait)
        return wait

    async def wait(self, chat_id: int | str) -> float:
        """Sleep until ``chat_id`` may be sent to; the seconds waited."""
        wait = self.reserve(chat_id)
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    def _forget_idle(self, now: float) -> None:
        self._chats = {key: bucket for key, bucket in self._chats.items() if not bucket.idle(now)}
        self._sweep_at = max(1024, 2 * len(self._chats))
