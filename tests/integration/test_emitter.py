"""The emitter against the real broker: output lands, and state changes land in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from sensors.core.types import Decisions
from sensors.runs.store import RunStore
from sensors.stages.emitter import Emitter
from sensors.stages.kafka import ensure_topics, new_consumer, new_producer
from triggers.settings import Settings

pytestmark = pytest.mark.integration


class FailsOnce(Emitter):
    """An emitter whose first send of one record is lost, as when the producer gives up."""

    def __init__(self, *args: Any, lost: bytes) -> None:
        super().__init__(*args)
        self._lost: bytes | None = lost

    async def _send(
        self,
        fires: list[Any],
        offers: Sequence[tuple[int, bytes]],
        changes: Sequence[tuple[int, bytes]],
        dead: Sequence[Any] = (),
    ) -> list[asyncio.Future[Any]]:
        if any(value == self._lost for _, value in changes):
            self._lost = None
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(KafkaTimeoutError("simulated: no acknowledgement"))
            return [failed]
        return await super()._send(fires, offers, changes, dead)


@pytest.fixture
async def settings(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> Settings:
    s = Settings(
        kafka_bootstrap=kafka_bootstrap,
        home=tmp_path,
        topic_sensor_state=f"{unique_name}.sensor-state",
        topic_partitions=1,
    )
    await ensure_topics(s, [s.topic_sensor_state])
    return s


@pytest.fixture
async def parts(settings: Settings) -> AsyncIterator[tuple[RunStore, Any]]:
    async with await RunStore.open(settings.store_url) as store:
        producer = new_producer(settings)
        await producer.start()
        try:
            yield store, producer
        finally:
            await producer.stop()


async def changelog(settings: Settings) -> list[bytes]:
    consumer = new_consumer(settings, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic_sensor_state, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while len(values) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            values += [r.value or b"" for r in batch.get(tp, [])]
        return values
    finally:
        await consumer.stop()


async def test_state_changes_land_once_each_in_submit_order(
    settings: Settings, parts: tuple[RunStore, Any]
) -> None:
    emitter = Emitter(settings, *parts)
    first = await emitter.submit(Decisions(), changes=[(0, b"first")])
    second = await emitter.submit(Decisions(), changes=[(0, b"second")])
    assert await asyncio.wait_for(second, 30) is False  # nothing was sent twice
    assert await first is False
    assert await changelog(settings) == [b"first", b"second"]


async def test_a_later_batch_lands_again_after_an_earlier_one_that_was_sent_again(
    settings: Settings, parts: tuple[RunStore, Any]
) -> None:
    # Given a batch whose changes are lost once, and the next batch's that are not
    emitter = FailsOnce(settings, *parts, lost=b"first")
    first = await emitter.submit(Decisions(), changes=[(0, b"first")])
    second = await emitter.submit(Decisions(), changes=[(0, b"second")])
    # When both have landed
    await asyncio.wait_for(second, 30)
    assert await first is True
    # Then the log ends with the later batch, so a replay ends on the newer state
    log = await changelog(settings)
    assert log[-1] == b"second"
    assert log.index(b"first") < len(log) - 1
