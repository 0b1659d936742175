"""Dead letters: records of the events topic that are not events, kept with the reason.

A record that does not decode (not a CloudEvent in binary or structured mode, a payload that is
not a JSON object, an unknown content type, over ``TRIPWIRE_MAX_PAYLOAD_BYTES``)
goes to ``tripwire.dead-letter`` as it was, with headers saying why and where it
came from; the worker commits past it only once it landed there, so nothing
accepted is lost, and goes on. ``tripwire events dead-letter list`` shows them,
``replay`` sends them back to where they came from (after a fix: a raised limit,
a producer that now sends JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from triggers.kafka_client import connect
from triggers.settings import Settings

__all__ = [
    "DeadRecord",
    "REASON",
    "DeadLetter",
    "dead_letter",
    "read_dead_letters",
    "replay",
    "source_letter",
]

REASON = "tripwire_reason"
_TOPIC, _PARTITION, _OFFSET = "tripwire_topic", "tripwire_partition", "tripwire_offset"
_AT, _SIZE = "tripwire_dead_at", "tripwire_original_bytes"
_SUBJECT = "tripwire_subject"
_OURS = (REASON, _TOPIC, _PARTITION, _OFFSET, _AT, _SIZE, _SUBJECT)


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic."""

    offset: int
    reason: str
    topic: str
    partition: int
    source_offset: int
    dead_at: str
    size: int
    truncated: bool
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


DeadRecord = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]
"""A dead letter as it is sent: key, value, headers."""


def dead_letter(
    record: ConsumerRecord[bytes, bytes], topic: str, reason: str, limit: int
) -> DeadRecord:
    """(key, value, headers) of the dead letter of ``record``. A value over ``limit`` is cut
    to it (the original size is in a header), since the producer could not send more."""
    value = record.value
    size = len(value or b"")
    headers = [(k, v) for k, v in record.headers or () if k not in _OURS]
    headers += [
        (REASON, reason.encode()),
        (_TOPIC, topic.encode()),
        (_PARTITION, str(record.partition).encode()),
        (_OFFSET, str(record.offset).encode()),
        (_AT, datetime.now(UTC).isoformat().encode()),
        (_SIZE, str(size).encode()),
    ]
    if value is not None and size > limit:
        value = value[:limit]
    return record.key, value, headers


def source_letter(
    source: str, subject: str, body: bytes, reason: str, limit: int
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of the dead letter of a message an event source could not make
    an event of. Its origin is ``source:NAME``: replay cannot send it back to another bus."""
    headers = [
        (REASON, reason.encode()),
        (_TOPIC, f"source:{source}".encode()),
        (_SUBJECT, subject.encode(errors="replace")),
        (_AT, datetime.now(UTC).isoformat().encode()),
        (_SIZE, str(len(body)).encode()),
    ]
    return source.encode(), body[:limit], headers


async def read_dead_letters(settings: Settings, limit: int = 100) -> list[DeadLetter]:
    """The newest ``limit`` dead letters, oldest first."""
    connection = settings.kafka_connection()
    consumer = AIOKafkaConsumer(**connection, enable_auto_commit=False)
    found: list[DeadLetter] = []
    try:
        await connect(consumer, connection)
        await consumer.topics()  # fresh metadata: the topic may be younger than the client
        partitions = consumer.partitions_for_topic(settings.topic_dead_letter) or set()
        tps = [TopicPartition(settings.topic_dead_letter, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(0, ends[tp] - limit))
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                found += [_letter(r) for r in records]
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
            if not batch:
                break
    finally:
        await consumer.stop()
    return sorted(found, key=lambda d: d.dead_at)[-limit:]


async def replay(settings: Settings, letters: list[DeadLetter]) -> int:
    """Send dead letters back to the topic they came from, as they were; return how many.
    Cut ones are refused: their value is not whole; so are those of event sources, which
    came from another bus (fix the source's declaration and send them there again)."""
    connection = settings.kafka_connection()
    producer = AIOKafkaProducer(
        **connection, acks="all", max_request_size=settings.max_payload_bytes * 4
    )
    try:
        await connect(producer, connection)
        acks = [
            await producer.send(
                letter.topic,
                letter.value,
                key=letter.key,
                headers=[(k, v) for k, v in letter.headers if k not in _OURS],
            )
            for letter in letters
            if not letter.truncated and not letter.topic.startswith("source:")
        ]
        for ack in acks:
            await ack
    finally:
        await producer.stop()
    return len(acks)


def _letter(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    headers = list(record.headers or ())
    ours = {k: v.decode(errors="replace") for k, v in headers if k in _OURS}
    size = int(ours.get(_SIZE, "0") or 0)
    return DeadLetter(
        offset=record.offset,
        reason=ours.get(REASON, ""),
        topic=ours.get(_TOPIC, ""),
        partition=int(ours.get(_PARTITION, "0") or 0),
        source_offset=int(ours.get(_OFFSET, "0") or 0),
        dead_at=ours.get(_AT, ""),
        size=size,
        truncated=size > len(record.value or b""),
        key=record.key,
        value=record.value,
        headers=headers,
    )
