"""The group commit: calls that arrive while a write is under way go together in the next."""

from __future__ import annotations

import asyncio

import pytest

from sensors.runs.together import GroupCommit


async def test_the_first_call_is_written_alone_and_those_meanwhile_together() -> None:
    batches: list[list[int]] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def write(items: list[int]) -> list[int | Exception]:
        batches.append(items)
        started.set()
        await release.wait()
        return [item * 10 for item in items]

    group: GroupCommit[int, int] = GroupCommit(write)
    first = asyncio.create_task(group(1))
    await started.wait()  # the first write is under way
    later = [asyncio.create_task(group(n)) for n in (2, 3, 4)]
    release.set()
    assert await asyncio.gather(first, *later) == [10, 20, 30, 40]
    assert batches == [[1], [2, 3, 4]]


async def test_an_answer_that_is_an_exception_is_raised_to_its_caller_alone() -> None:
    async def write(items: list[int]) -> list[int | Exception]:
        return [ValueError(f"bad {i}") if i < 0 else i for i in items]

    group: GroupCommit[int, int] = GroupCommit(write)
    answers = await asyncio.gather(group(1), group(-1), group(2), return_exceptions=True)
    assert answers[0::2] == [1, 2]
    assert isinstance(answers[1], ValueError) and str(answers[1]) == "bad -1"


async def test_a_write_that_fails_fails_every_caller_of_its_batch_and_the_next_goes_on() -> None:
    calls = 0

    async def write(items: list[int]) -> list[int | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("the store is down")
        return items

    group: GroupCommit[int, int] = GroupCommit(write)
    answers = await asyncio.gather(group(1), group(2), return_exceptions=True)
    assert all(isinstance(a, ConnectionError) for a in answers)
    assert await group(3) == 3


async def test_a_cancelled_caller_does_not_stop_the_others() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def write(items: list[int]) -> list[int | Exception]:
        started.set()
        await release.wait()
        return items

    group: GroupCommit[int, int] = GroupCommit(write)
    cancelled, kept = asyncio.create_task(group(1)), asyncio.create_task(group(2))
    await started.wait()  # the write of the first is under way
    cancelled.cancel()
    release.set()
    assert await kept == 2
    with pytest.raises(asyncio.CancelledError):
        await cancelled
