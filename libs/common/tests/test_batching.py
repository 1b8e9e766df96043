"""Coalescing concurrent callers: each gets its own answer, its failure, or its cancellation."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable

import pytest

from jggl_common.batching import Coalescer


async def test_callers_of_one_loop_turn_share_one_flush_and_get_their_own_slices() -> None:
    flushes: list[list[int]] = []

    async def flush(keys: list[int]) -> list[int]:
        flushes.append(keys)
        return [key * 10 for key in keys]

    coalescer: Coalescer[int, int] = Coalescer(flush)
    answers = await asyncio.gather(coalescer.submit([1, 2]), coalescer.submit([3]), coalescer.submit([4, 5, 6]))

    assert list(answers) == [[10, 20], [30], [40, 50, 60]]
    assert flushes == [[1, 2, 3, 4, 5, 6]]
    assert await coalescer.submit([7]) == [70]  # a later turn gets a flush of its own
    assert flushes[-1] == [7]


async def test_a_failing_flush_fails_every_caller_of_it() -> None:
    async def flush(keys: list[int]) -> list[int]:
        raise RuntimeError("broker down")

    coalescer: Coalescer[int, int] = Coalescer(flush)
    outcomes = await asyncio.gather(coalescer.submit([1]), coalescer.submit([2]), return_exceptions=True)

    assert [str(o) for o in outcomes] == ["broker down", "broker down"]


async def test_a_cancelled_flush_cancels_its_callers_instead_of_leaving_them_waiting() -> None:
    async def flush(keys: list[int]) -> list[int]:
        # What stopping the process does to a flush waiting on the database.
        raise asyncio.CancelledError

    coalescer: Coalescer[int, int] = Coalescer(flush)
    callers = [asyncio.create_task(coalescer.submit([i])) for i in range(3)]

    for caller in callers:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(caller, 2)


class _Gated:
    """A flush that records its keys and answers only once released (a busy database)."""

    def __init__(self, answer: Callable[[int], int] = lambda key: key) -> None:
        self.flushes: list[list[int]] = []
        self.release = asyncio.Event()
        self._answer = answer

    async def __call__(self, keys: list[int]) -> list[int]:
        self.flushes.append(keys)
        await self.release.wait()
        return [self._answer(key) for key in keys]


async def test_with_one_flush_in_flight_callers_arriving_meanwhile_go_together_in_the_next() -> None:
    flush = _Gated(operator.neg)
    flushes, release = flush.flushes, flush.release
    coalescer: Coalescer[int, int] = Coalescer(flush, max_in_flight=1)
    first = asyncio.create_task(coalescer.submit([1]))
    await asyncio.sleep(0.01)
    later = []
    for key in range(2, 7):  # each in a loop turn of its own, while the first flush runs
        later.append(asyncio.create_task(coalescer.submit([key])))
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    assert flushes == [[1]]
    assert coalescer.backlogged

    release.set()
    assert await first == [-1]
    assert [await caller for caller in later] == [[-2], [-3], [-4], [-5], [-6]]
    assert flushes == [[1], [2, 3, 4, 5, 6]]
    assert not coalescer.backlogged


async def test_max_batch_bounds_a_flush_without_splitting_a_callers_keys() -> None:
    flush = _Gated()
    flushes, release = flush.flushes, flush.release
    coalescer: Coalescer[int, int] = Coalescer(flush, max_in_flight=1, max_batch=3)
    blocker = asyncio.create_task(coalescer.submit([0]))
    await asyncio.sleep(0.01)
    callers = [asyncio.create_task(coalescer.submit(keys)) for keys in ([1, 2], [3], [4], [5, 6, 7, 8], [9])]
    await asyncio.sleep(0.01)
    release.set()

    assert [await caller for caller in callers] == [[1, 2], [3], [4], [5, 6, 7, 8], [9]]
    await blocker
    # A caller with more keys than max_batch still goes, alone.
    assert flushes == [[0], [1, 2, 3], [4], [5, 6, 7, 8], [9]]


async def test_a_caller_cancelled_while_waiting_is_left_out_of_the_next_flush() -> None:
    flush = _Gated()
    flushes, release = flush.flushes, flush.release
    coalescer: Coalescer[int, int] = Coalescer(flush, max_in_flight=1)
    first = asyncio.create_task(coalescer.submit([1]))
    await asyncio.sleep(0.01)
    gone, stays = asyncio.create_task(coalescer.submit([2])), asyncio.create_task(coalescer.submit([3]))
    await asyncio.sleep(0.01)
    gone.cancel()
    release.set()

    assert await stays == [3]
    assert await first == [1]
    assert flushes == [[1], [3]]


def test_bounds_must_be_positive() -> None:
    async def flush(keys: list[int]) -> list[int]:
        return keys

    with pytest.raises(ValueError, match="max_in_flight"):
        Coalescer(flush, max_in_flight=0)
    with pytest.raises(ValueError, match="max_batch"):
        Coalescer(flush, max_batch=0)
