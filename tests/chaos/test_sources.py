"""An event source while tripwire's broker is down: messages wait on their bus, unacknowledged,
and become events once the broker is back."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import redis.asyncio as aioredis

from sensors.broker import EmbeddedBroker
from tests.fixtures.buses import bus
from tests.fixtures.sources import ran, running
from tests.fixtures.waits import eventually

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


async def test_a_source_holds_its_messages_while_the_broker_is_down(
    s3_broker: EmbeddedBroker, engine_env: dict[str, str]
) -> None:
    redis = bus("redis", engine_env["TRIPWIRE_PROJECT"])
    redis.require()
    spec = redis.source()
    async with running(spec) as engine:
        assert engine.store is not None and engine.source_supervisor is not None
        runner = engine.source_supervisor.runners[spec.name][0]
        await redis.send({"order": "before", "amount": 1})
        await ran(engine.store, "before")
        # When tripwire's broker dies, and messages arrive on the bus meanwhile
        assert s3_broker.pid is not None
        os.kill(s3_broker.pid, signal.SIGKILL)
        s3_broker.stop()
        await redis.send({"order": "during", "amount": 2})
        await eventually(lambda: runner.stats.messages_in == 2, "the source took the message")
        await asyncio.sleep(3)
        # Then the message stays unacknowledged on its bus while the broker is away
        assert await _pending(redis.url, spec) == 1
        assert runner.stats.events_out == 1
        # And becomes an event, a run, and an acknowledgement once the broker is back
        s3_broker.start(timeout=30)
        await ran(engine.store, "during")
        await eventually(lambda: _acknowledged(redis.url, spec), "the acknowledgement", timeout=30)
        assert runner.stats.events_out == 2


async def _pending(url: str, spec: object) -> int:
    """How many entries the source's group received and did not acknowledge."""
    client = aioredis.from_url(url)
    try:
        (group,) = await client.xinfo_groups(spec.stream)  # type: ignore[attr-defined]
    finally:
        await client.aclose()
    return int(group["pending"])


async def _acknowledged(url: str, spec: object) -> bool:
    return await _pending(url, spec) == 0
