"""The most recent events on the events topic, for the web page: tailed, kept in memory."""

from __future__ import annotations

import asyncio
import collections
import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from sensors.stages.kafka import new_consumer
from triggers.envelope import decode
from triggers.errors import EventDecodeError, KafkaSecurityError
from triggers.kafka_client import connect
from triggers.settings import Settings

__all__ = ["RecentEvents"]

log = logging.getLogger(__name__)

_RETRY = 2.0  # seconds before tailing again after the broker went away


class RecentEvents:
    """The last ``size`` events published, newest first; filled by :meth:`run`."""

    def __init__(self, settings: Settings, size: int = 100) -> None:
        self._settings = settings
        self._size = size
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)

    def latest(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self._events)[:limit]

    async def run(self, stop: asyncio.Event) -> None:
        """Tail the events topic from ``size`` records before its end, until ``stop``."""
        while not stop.is_set():
            try:
                await self._tail(stop)
            except KafkaSecurityError as exc:
                log.error("recent events: %s; retrying", exc)
                await asyncio.sleep(_RETRY)
            except (KafkaError, OSError) as exc:
                log.warning("recent events: the broker went away (%s); retrying", exc)
                await asyncio.sleep(_RETRY)
            except Exception:
                log.exception("recent events: tailing failed; retrying")
                await asyncio.sleep(_RETRY)

    async def _tail(self, stop: asyncio.Event) -> None:
        topic = self._settings.topic_events
        consumer = new_consumer(self._settings, group_id=None)
        try:
            await connect(consumer, self._settings.kafka_connection())
            await consumer.topics()  # fetches the metadata
            partitions = sorted(consumer.partitions_for_topic(topic) or ())
            assigned = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(assigned)
            ends = await consumer.end_offsets(assigned)
            for tp in assigned:
                consumer.seek(tp, max(0, ends[tp] - self._size))
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                fresh = sorted(
                    (r for records in batch.values() for r in records), key=lambda r: r.timestamp
                )
                for record in fresh:
                    self._events.appendleft(_shown(record))
        finally:
            await consumer.stop()


def _shown(record: Any) -> dict[str, Any]:
    received = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    try:
        event = decode(record.value, record.headers)
    except EventDecodeError as exc:
        return {"name": "?", "id": "?", "error": str(exc), "received": received}
    return {
        "name": event.name,
        "id": event.id,
        "source": event.source,
        "time": event.time,
        "payload": event.payload,
        "received": received,
    }
