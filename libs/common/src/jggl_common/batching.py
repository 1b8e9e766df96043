"""Coalescing the work of concurrent callers into one round trip.

Callers that arrive during the same turn of the event loop submit their keys; one
flush, scheduled with ``call_soon``, handles them all at once (one Redis ``MGET`` for
many webhooks, one transaction for many consumed messages) and hands each caller its
own slice of the answer. Under load this turns N round trips into one without adding a
timer's worth of latency.

With ``max_in_flight`` the number of flushes running at once is bounded: callers who
arrive while every slot is busy wait together and go in the next flush when one ends.
A lone caller on a quiet system still goes at once; under load the batches grow by
themselves, up to ``max_batch`` keys, instead of the flushes multiplying (the way a
database groups commits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")


class Coalescer(Generic[K, R]):
    """Runs ``flush(all_keys) -> results`` once per loop turn for every caller of ``submit``."""

    def __init__(
        self,
        flush: Callable[[list[K]], Awaitable[Sequence[R]]],
        *,
        max_in_flight: int | None = None,
        max_batch: int | None = None,
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if max_batch is not None and max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._flush = flush
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._waiting: list[tuple[Sequence[K], asyncio.Future[list[R]]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def backlogged(self) -> bool:
        """Whether callers are waiting for a free slot (the flushes cannot keep up right now)."""
        return bool(self._waiting) and self._max_in_flight is not None and len(self._tasks) >= self._max_in_flight

    async def submit(self, keys: Sequence[K]) -> list[R]:
        """The results for ``keys``, computed together with other callers' keys."""
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._waiting.append((keys, future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        """Start a flush at the end of this loop turn, if none is due and a slot is free."""
        if self._scheduled or not self._waiting:
            return
        if self._max_in_flight is not None and len(self._tasks) >= self._max_in_flight:
            return  # the next flush to end starts the waiting callers
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        # Callers cancelled while they waited have nothing left to flush.
        waiting = [entry for entry in self._waiting if not entry[1].done()]
        taken = 0
        if self._max_batch is None:
            taken = len(waiting)
        else:
            keys = 0
            while taken < len(waiting) and (taken == 0 or keys + len(waiting[taken][0]) <= self._max_batch):
                keys += len(waiting[taken][0])
                taken += 1
        batch, self._waiting = waiting[:taken], waiting[taken:]
        if batch:
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        self._schedule()  # what did not fit goes next, if a slot is left

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._schedule()

    async def _run(self, batch: list[tuple[Sequence[K], asyncio.Future[list[R]]]]) -> None:
        keys = [key for part, _ in batch for key in part]
        try:
            results = list(await self._flush(keys))
        except BaseException as exc:
            # Every caller learns the outcome, also when the flush itself is cancelled.
            for _, future in batch:
                if not future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        offset = 0
        for part, future in batch:
            if not future.done():
                future.set_result(results[offset : offset + len(part)])
            offset += len(part)
