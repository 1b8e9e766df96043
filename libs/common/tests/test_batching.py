"""Coalescing concurrent callers: each gets its own answer, its failure, or its cancellation."""

from __future__ import annotations

import asyncio

import pytest

from jggl_common.batching import Coalescer


async def test_callers_of_one_loop_turn_share_one_flush_and_get_their_own_slices() -> None:
    flushes: list[list[int]] = []

    async def flush(keys: list[int]) -> list[int]:
        flushes.append(keys)
        return [key * 10 for key in keys]

    coalescer: Coalescer[int, int] = Coalescer(flush)
    answers = await asyncio.gather(coalescer.submit([1, 2]), coalescer.submit([3]), coalescer.submit([4, 5, 6]))

    assert answers == [[10, 20], [30], [40, 50, 60]]
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
