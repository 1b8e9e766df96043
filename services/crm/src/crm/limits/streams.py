"""Live event streams open at once per user, counted across every replica.

Each open stream holds a *slot*: a member of its user's sorted set in Redis, scored with
the moment its lease lapses (Redis's clock). The replica serving the stream renews the
leases it holds every third of a lease; a replica that is killed stops renewing, and its
slots lapse within one lease instead of counting against their users for ever. Taking a
slot drops the lapsed leases, counts the rest and adds one in one Lua script, atomic
across replicas. A stream that ends gives its slot back at once.

When Redis does not answer, streams are let through uncounted (the live pages keep
working; ``jggl_crm_live_streams_uncounted_total`` counts them) and Redis is tried again a
few seconds later. Such a stream still holds its slot in this replica, and the next
renewal once Redis answers writes it down, so the count is right again.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from jggl_common.logs import get_logger

log = get_logger(__name__)

REFUSED = Counter(
    "jggl_crm_live_streams_refused_total",
    "Live event streams (GET /api/events) refused with 429: the user had LIVE_MAX_STREAMS_PER_USER open",
)
UNCOUNTED = Counter(
    "jggl_crm_live_streams_uncounted_total",
    "Live event streams opened without counting them against their user's cap because Redis did not answer",
)

LEASE_SECONDS = 60.0
"""A slot lapses this long after its replica last renewed it."""

RETRY_AFTER_SECONDS = 30
"""What a refused stream is told to wait: slots free when a tab closes, which no one can foresee."""

TOO_MANY_STREAMS = "Too many open live connections for this user: close a tab"

_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS[1]: the user's slots. ARGV[1]: the cap, ARGV[2]: the lease (ms), ARGV[3]: the new slot.
# Answers 1 when the slot is taken, 0 when the user already holds the cap.
_TAKE = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
"""
)

# KEYS: users' slots. ARGV[1]: the lease (ms), then for each key: how many slots this replica
# holds there, and those slots. A slot that lapsed meanwhile (Redis was away) is written again:
# its stream is still open.
_RENEW = (
    _NOW_MS
    + """
local lease = tonumber(ARGV[1])
local at = 2
for _, key in ipairs(KEYS) do
  local count = tonumber(ARGV[at])
  for index = at + 1, at + count do
    redis.call('ZADD', key, now + lease, ARGV[index])
  end
  redis.call('PEXPIRE', key, lease)
  at = at + count + 1
end
return at
"""
)

# KEYS[1]: the user's slots. Answers how many have not lapsed.
_COUNT = _NOW_MS + "\nreturn redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')\n"


@dataclass(frozen=True)
class StreamSlot:
    """One open stream's place among its user's; give it back with :meth:`StreamSlots.release`."""

    key: str
    member: str


class StreamSlots:
    """At most ``per_user`` live streams per user across every replica (0: no cap)."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        per_user: int,
        lease_seconds: float = LEASE_SECONDS,
        timeout: float = 0.5,
        retry_redis_after: float = 5.0,
    ) -> None:
        """``prefix`` starts every key (``<prefix>:<user id>``); Redis is given ``timeout`` seconds an answer."""
        self.per_user = per_user
        self.prefix = prefix
        self._redis = redis
        self._lease_ms = max(1, round(lease_seconds * 1000))
        self._timeout = timeout
        self._retry_redis_after = retry_redis_after
        self._redis_down_until = 0.0
        self._take = redis.register_script(_TAKE)
        self._renew = redis.register_script(_RENEW)
        self._count = redis.register_script(_COUNT)
        self._held: dict[str, set[str]] = {}
        self._renewing: asyncio.Task[None] | None = None

    async def take(self, user_id: int) -> StreamSlot | None:
        """A slot for one more stream of the user's; None when they hold ``per_user`` already.

        Never raises: without Redis the stream is let through (and counted as uncounted).
        """
        slot = StreamSlot(f"{self.prefix}:{user_id}", secrets.token_hex(8))
        if self.per_user <= 0:
            return slot
        if self._redis_unknown():
            UNCOUNTED.inc()
        else:
            try:
                async with asyncio.timeout(self._timeout):
                    taken = await self._take(keys=[slot.key], args=[self.per_user, self._lease_ms, slot.member])
            except (RedisError, OSError, TimeoutError) as exc:
                self._redis_failed("live stream slots uncounted for a few seconds: Redis unavailable", exc)
                UNCOUNTED.inc()
            else:
                if not int(taken):
                    REFUSED.inc()
                    return None
        self._hold(slot)
        return slot

    async def has_room(self, user_id: int) -> bool:
        """Whether the user may open one more stream now (nothing is taken); True without Redis."""
        if self.per_user <= 0 or self._redis_unknown():
            return True
        try:
            async with asyncio.timeout(self._timeout):
                count = await self._count(keys=[f"{self.prefix}:{user_id}"])
        except (RedisError, OSError, TimeoutError) as exc:
            self._redis_failed("live stream slots uncounted for a few seconds: Redis unavailable", exc)
            return True
        return int(count) < self.per_user

    async def release(self, slot: StreamSlot) -> None:
        """Give the slot back (its stream ended); never raises: a slot not given back lapses with its lease."""
        members = self._held.get(slot.key)
        if members is None or slot.member not in members:
            return
        members.discard(slot.member)
        if not members:
            del self._held[slot.key]
        if not self._held and self._renewing is not None:
            self._renewing.cancel()
            self._renewing = None
        if self._redis_unknown():
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.zrem(slot.key, slot.member)
        except (RedisError, OSError, TimeoutError) as exc:
            self._redis_failed("a live stream slot was not given back: it lapses with its lease", exc)

    async def renew(self) -> None:
        """Extend the lease of every slot this replica holds (and write down those taken without Redis)."""
        if not self._held or self._redis_unknown():
            return
        keys = list(self._held)
        args: list[str | int] = [self._lease_ms]
        for key in keys:
            args += [len(self._held[key]), *self._held[key]]
        try:
            async with asyncio.timeout(self._timeout):
                await self._renew(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._redis_failed("live stream slots not renewed: Redis unavailable", exc)

    def _hold(self, slot: StreamSlot) -> None:
        self._held.setdefault(slot.key, set()).add(slot.member)
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.create_task(self._renew_while_held(), name="live-stream-slots")

    async def _renew_while_held(self) -> None:
        while self._held:
            await asyncio.sleep(self._lease_ms / 3000)
            await self.renew()

    def _redis_unknown(self) -> bool:
        """Whether Redis failed a moment ago (it is left alone until then)."""
        return time.monotonic() < self._redis_down_until

    def _redis_failed(self, message: str, exc: BaseException) -> None:
        self._redis_down_until = time.monotonic() + self._retry_redis_after
        log.warning(message, error=repr(exc))


def stream_slots(request: Request) -> StreamSlots:
    """This app's live stream slots (made by :func:`crm.limits.install_rate_limits`)."""
    slots: StreamSlots = request.app.state.live_stream_slots
    return slots


LiveStreamSlots = Annotated[StreamSlots, Depends(stream_slots)]
"""The live stream slots, as an endpoint parameter."""
