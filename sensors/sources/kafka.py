"""Another Kafka cluster's topic (or tripwire's own), read by a consumer group.

Offsets are committed after the batch's events are in tripwire's events topic, and
where each partition starts as soon as the group first gets it.
aiokafka reconnects to the cluster by itself; a rebalance in the middle of a batch
makes its commit fail, and the next owner of the partition reads it again (the
events keep their ids: ``topic:partition:offset`` by default).

``kafka://`` reads tripwire's own cluster and connects as tripwire does (TRIPWIRE_KAFKA_*).
Another cluster's brokers get the source's own ``security`` and the URL's user name and
password, never the worker's credentials.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from sensors.sources.base import Message, Upstream
from triggers.errors import ConfigurationError
from triggers.kafka_client import client_options, connect
from triggers.sources import EventSource

__all__ = ["KafkaUpstream", "bootstrap_of"]


def bootstrap_of(url: str) -> str:
    """``kafka://user:pw@host:9092,host2:9092`` -> ``host:9092,host2:9092``; ``kafka://`` -> ``""``
    (tripwire's own cluster)."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1]


class KafkaUpstream(Upstream):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._consumer: AIOKafkaConsumer | None = None

    async def connect(self) -> None:
        connection = self._connection()
        self._consumer = AIOKafkaConsumer(
            **connection,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self.spec.start == "all" else "latest",
            # A topic created after the source started is read within seconds, not minutes.
            metadata_max_age_ms=5000,
            # As the engine's consumers: Tansu holds a fetch for about half its wait even
            # when data is there, and a large fetch keeps the batches coming.
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self._consumer.subscribe([self.spec.address], listener=_Pin(self._consumer))
        try:
            await connect(self._consumer, connection, EventSource.security_field)
        except BaseException:
            await self._consumer.stop()
            self._consumer = None
            raise

    def _connection(self) -> dict[str, Any]:
        """aiokafka's arguments: tripwire's own for ``kafka://``, else the brokers of the URL
        with the source's ``security`` (never the worker's credentials, for another cluster).

        Raises:
            ConfigurationError: a certificate, key or token provider cannot be loaded.
        """
        brokers = bootstrap_of(self.url)
        if not brokers:
            return self.settings.kafka_connection()
        security = self.spec.kafka_security(self.url)
        if (problem := security.problem(EventSource.security_field)) is not None:
            raise ConfigurationError(problem)  # a file missing where the source runs
        return {
            "bootstrap_servers": brokers,
            **client_options(security, EventSource.security_field),
        }

    async def receive(self, limit: int, timeout: float) -> list[Message]:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=int(timeout * 1000), max_records=limit)
        return [
            Message(
                body=r.value or b"",
                subject=r.topic,
                headers={k: v.decode(errors="replace") for k, v in r.headers or ()},
                native_id=f"{r.topic}:{r.partition}:{r.offset}",
                time=datetime.fromtimestamp(r.timestamp / 1000, UTC) if r.timestamp else None,
                key=r.key.decode(errors="replace") if r.key is not None else None,
                handle=(r.partition, r.offset),
            )
            for records in batches.values()
            for r in records
        ]

    async def ack(self, messages: list[Message]) -> None:
        if not messages or self._consumer is None:
            return
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for message in messages:
            partition, offset = message.handle
            offsets[TopicPartition(self.spec.address, partition)] = OffsetAndMetadata(
                offset + 1, ""
            )
        await self._consumer.commit(offsets)

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()


class _Pin(ConsumerRebalanceListener):
    """Commits where a partition starts when the group has no offset for it yet.

    Without it, a source that started at the end of the topic (``start: new``) and
    died before its first commit would start at the (new) end again, past what it
    had received: the group remembers where the source started from its first
    assignment on."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Nothing to do: offsets are committed batch by batch."""

    async def on_partitions_assigned(self, assigned: Any) -> None:
        fresh = {}
        for tp in assigned:
            if await self._consumer.committed(tp) is None:
                fresh[tp] = OffsetAndMetadata(await self._consumer.position(tp), "")
        if fresh:
            await self._consumer.commit(fresh)
