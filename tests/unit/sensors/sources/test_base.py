"""The inbox of push-style bus clients: batches in order, and a lost connection surfaces."""

from __future__ import annotations

import asyncio

import pytest

from sensors.sources.base import Inbox, Message, UpstreamLost


def msg(n: int) -> Message:
    return Message(body=str(n).encode(), subject="s")


async def test_take_returns_what_arrived_in_order_up_to_the_limit() -> None:
    inbox = Inbox()
    for n in range(5):
        inbox.put(msg(n))
    assert [m.body for m in await inbox.take(3, 1)] == [b"0", b"1", b"2"]
    assert [m.body for m in await inbox.take(10, 1)] == [b"3", b"4"]


async def test_take_waits_for_the_first_message_then_takes_the_rest() -> None:
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, lambda: [inbox.put(msg(n)) for n in range(3)])
    assert [m.body for m in await inbox.take(10, 5)] == [b"0", b"1", b"2"]
    assert await inbox.take(10, 0.01) == []


async def test_a_failure_surfaces_after_what_arrived_before_it() -> None:
    inbox = Inbox()
    inbox.put(msg(1))
    inbox.fail(UpstreamLost("gone"))
    assert [m.body for m in await inbox.take(10, 1)] == [b"1"]
    with pytest.raises(UpstreamLost, match="gone"):
        await inbox.take(10, 1)


async def test_a_failure_wakes_a_waiting_take() -> None:
    inbox = Inbox()
    asyncio.get_running_loop().call_later(0.05, inbox.fail, UpstreamLost("gone"))
    with pytest.raises(UpstreamLost):
        await inbox.take(10, 5)
