"""``type: kafka``: lifecycle events re-published, unchanged, to a topic on any cluster."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from sensors.egress.base import Outgoing
from triggers.cloud_events import CloudEventsConfig
from triggers.kafka_client import connect
from triggers.settings import Settings

__all__ = ["KafkaSink"]


class KafkaSink:
    """Produces each event to ``topicName`` (binary-mode CloudEvents, keyed by run name).

    It connects with tripwire's own Kafka security (TRIPWIRE_KAFKA_*), also to the
    ``kafka.brokers`` of another cluster.
    """

    def __init__(self, config: CloudEventsConfig, settings: Settings) -> None:
        brokers = config.kafka.brokers or settings.require_bootstrap()
        self._settings = settings
        self._brokers = ",".join(brokers) if isinstance(brokers, list) else brokers
        self._topic = config.topic
        self._producer: AIOKafkaProducer | None = None

    async def send(self, events: Sequence[Outgoing]) -> None:
        if self._producer is None:
            connection = self._settings.kafka_connection(self._brokers)
            producer = AIOKafkaProducer(**connection, acks="all")
            try:
                await connect(producer, connection)
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        acks = [
            await self._producer.send(self._topic, e.value, key=e.key, headers=e.headers)
            for e in events
        ]
        for ack in acks:
            await ack

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
