"""What the benchmarks share: a broker to measure on, and a topic filled as fast as aiokafka
can. Scripts import it as ``bench.common`` (see the sys.path line at the top of each)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager

from aiokafka import AIOKafkaProducer

from sensors.broker import EmbeddedBroker

Records = list[tuple[bytes, bytes, list[tuple[str, bytes]]]]  # key, value, headers


@contextmanager
def kafka(bootstrap: str | None) -> Iterator[str]:
    """``bootstrap``, else ``TRIPWIRE_TEST_KAFKA``, else an embedded broker started for the
    duration."""
    given = bootstrap or os.environ.get("TRIPWIRE_TEST_KAFKA")
    if given:
        yield given
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


async def fill(bootstrap: str, topic: str, records: Records) -> None:
    """Produce ``records`` to ``topic`` in large batches, and wait until all are acknowledged."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=k, headers=h) for k, v, h in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
