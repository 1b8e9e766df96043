"""Coalescing the work of concurrent callers into one round trip.

Callers that arrive during the same turn of the event loop submit their keys; one
flush, scheduled with ``call_soon``, handles them all at once (one Redis ``MGET`` for
many webhooks, one transaction for many consumed messages) and hands each caller its
own slice of the answer. Under load this turns N round trips into one without adding a
timer's worth of latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")


class Coalescer(Generic[K, R]):
    """Runs ``flush(all_keys) -> results`` once per loop turn for every caller of ``submit``."""

    def __init__(self, flush: Callable[[list[K]], Awaitable[Sequence[R]]]) -> None:
        self._flush = flush
        self._waiting: list[tuple[Sequence[K], asyncio.Future[list[R]]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, keys: Sequence[K]) -> list[R]:
        """The results for ``keys``, computed together with other callers' keys."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[R]] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._start)
        self._waiting.append((keys, future))
        return await future

    def _start(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
