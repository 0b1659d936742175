"""Kafka plumbing for the engine: tuned clients, topic creation, and the batch loop.

Why plain aiokafka and not faust agents (measured on this stack; docs/architecture.md,
"Why aiokafka batches, not faust agents"):
faust's per-event stream machinery caps a process at about 10-12k events/s
(3.1-3.5k/s with one table update per event), its worker hard-codes
``fetch_max_wait_ms=1500`` (about 750 ms per hop on Tansu), its exactly-once
mode cannot work on Tansu, and its offset commits go wrong when acks have gaps
(faust-streaming #596, #606, #312). The engine's stages instead read whole
batches with ``getmany``, decide them in the pure core, write their output,
and only then commit the batch's offsets: at-least-once delivery, made
exactly-once at launch by deterministic run names and the store's unique key.

Why the consumer group settings: Tansu holds a JoinGroup for half of the
group's session timeout (measured: the default 60 s in faust gave a 30 s join,
10 s gives 5 s, 3 s gives 2 s; the rebalance timeout has no effect), and
answers a fetch after about half of ``fetch_max_wait_ms`` even when data is
waiting. Both come from :class:`~triggers.settings.Settings`, low by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    TopicAlreadyExistsError,
)

from sensors.runs.outages import log_failure
from triggers.kafka_client import connect
from triggers.settings import Settings

__all__ = [
    "Batch",
    "Handler",
    "Superseded",
    "consume_batches",
    "ensure_topics",
    "new_consumer",
    "new_producer",
    "send_records",
]

log = logging.getLogger(__name__)
_STALLED = 60.0  # seconds a batch may take to land (or reads stay empty) before a stage says so
_LOOK_TIMEOUT = 5.0  # seconds the idle check waits for the broker

Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


class Superseded(Exception):
    """A batch's output was abandoned: its partitions belong to another worker now, which
    handles them again. Its offsets are not committed."""


Handler = Callable[[Batch], Awaitable[Awaitable[Any] | None]]
"""Handles a batch; returns None once its output landed, or an awaitable of that."""


def new_consumer(
    settings: Settings,
    *topics: str,
    group_id: str | None,
    listener: ConsumerRebalanceListener | None = None,
    **overrides: Any,
) -> AIOKafkaConsumer:
    """A consumer group member tuned for low latency on Tansu and on Kafka.

    With ``group_id=None`` it is a plain reader that the caller assigns partitions to.
    """
    session_ms = int(settings.kafka_session_timeout * 1000)
    options: dict[str, Any] = {
        **settings.kafka_connection(),
        "group_id": group_id,
        "enable_auto_commit": False,
        # A new group reads from the start, so nothing published while workers join
        # is lost; sensors ignore events that predate their deployment (Sensor docs).
        "auto_offset_reset": "earliest",
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": max(100, session_ms // 3),
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "max_poll_records": 5000,
        "max_partition_fetch_bytes": 8 * 1024 * 1024,
    }
    options.update(overrides)
    if listener is None:
        return AIOKafkaConsumer(*topics, **options)
    consumer = AIOKafkaConsumer(**options)
    consumer.subscribe(list(topics), listener=listener)
    return consumer


def new_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that waits for full acknowledgement."""
    options: dict[str, Any] = {
        **settings.kafka_connection(),
        "acks": "all",
        "linger_ms": 2,
        # The stages send a batch's output at once (send_records): few, large batches.
        "max_batch_size": 512 * 1024,
        "max_request_size": settings.max_payload_bytes + 64 * 1024,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def send_records(
    producer: AIOKafkaProducer, topic: str, records: Iterable[tuple[int, bytes | None, bytes]]
) -> list[asyncio.Future[Any]]:
    """Send (partition, key, value) records in as few produce batches as they fit.

    ``send`` costs about 30 µs a record (half of it the key partitioner); building
    the batches here costs a few, so the caller picks the partition itself.
    Returns the futures of the batches' acknowledgements.
    """
    open_batches: dict[int, Any] = {}
    acks = []
    for partition, key, value in records:
        batch = open_batches.get(partition)
        if batch is None:
            batch = open_batches[partition] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full
            acks.append(await producer.send_batch(batch, topic, partition=partition))
            batch = open_batches[partition] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)  # an empty batch takes any
    for partition, batch in open_batches.items():
        batch.close()
        acks.append(await producer.send_batch(batch, topic, partition=partition))
    return acks


async def ensure_topics(
    settings: Settings, names: Iterable[str], configs: dict[str, dict[str, str]] | None = None
) -> None:
    """Create the engine's topics with the configured partition count, if missing.

    Raises:
        KafkaSecurityError: the broker refused the connection's TLS or SASL; this is where
            the engine and the API first meet the broker, so it says why at start.
    """
    connection = settings.kafka_connection()
    admin = AIOKafkaAdminClient(**connection)
    try:
        await connect(admin, connection)
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication,
                topic_configs=(configs or {}).get(name, {}),
            )
            for name in names
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
                await admin.create_topics(wanted)
    finally:
        await admin.close()


async def consume_batches(
    consumer: AIOKafkaConsumer,
    handle: Handler,
    *,
    stop: asyncio.Event,
    name: str,
    max_records: int = 5000,
    retry_delay: float = 1.0,
    tick: Callable[[], Awaitable[None]] | None = None,
    ready: Callable[[TopicPartition], bool] | None = None,
) -> None:
    """Read batches, hand each to ``handle``, then commit it; until ``stop`` is set.

    With ``ready``, the records of a partition that is not ready (its state is still
    being restored) are neither handled nor committed: the consumer seeks back to them,
    and reads them again once it is. The check is made just before ``handle``, since a
    rebalance may have changed the assignment while the batch was fetched.

    A batch whose handler fails is retried, not skipped, so nothing that was
    read is lost; handlers must be idempotent (they are: run names are).

    ``tick`` is called after each batch is handed over, and after each empty read.

    A handler may return an awaitable that completes once its output is
    acknowledged. The loop then reads and handles the next batch while that
    output is in flight, and commits the batch after it lands, in order, with
    one batch in flight at most; one whose awaitable raises :class:`Superseded` is
    not committed.
    """
    landing: asyncio.Task[None] | None = None
    idle = _Idle(consumer, name)
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=max_records)
            if not batch:
                await idle.check()
                if tick is not None:
                    await tick()
                continue
            idle.since = None
            while True:
                if ready is not None:
                    batch = _defer_unready(consumer, batch, ready, name)
                    if not batch:
                        break
                try:
                    output = await handle(batch)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log_failure(
                        log, "%s: handling a batch failed; retrying in %.1fs", name, retry_delay
                    )
                    await asyncio.sleep(retry_delay)
            if batch:
                offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
                if landing is not None:
                    await _until_done(landing, name)
                landing = asyncio.create_task(_commit_after(consumer, output, offsets, name))
            if tick is not None:  # after the batch: a tick sees what was handled
                await tick()
        if landing is not None:
            await landing
    except asyncio.CancelledError:
        if landing is not None:
            landing.cancel()
        raise


class _Idle:
    """Says so when a stage has read nothing for ``_STALLED`` seconds while partitions it
    owns have records it has not read: a consumer that stopped fetching, which would
    otherwise leave those records unhandled without a word."""

    def __init__(self, consumer: AIOKafkaConsumer, name: str) -> None:
        self.consumer, self.name = consumer, name
        self.since: float | None = None  # when reads started coming back empty
        self.said = 0.0

    async def check(self) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
        if now - max(self.since, self.said) < _STALLED:
            return
        self.said = now
        behind = await _behind(self.consumer)
        if behind:
            log.warning(
                "%s: read nothing for %.0fs, though %s; check the broker, and the worker's "
                "other warnings",
                self.name,
                now - self.since,
                "; ".join(behind),
            )


async def _behind(consumer: AIOKafkaConsumer) -> list[str]:
    """The assigned partitions whose end is past the consumer's position, each with where
    the consumer stands."""
    assigned = sorted(consumer.assignment())
    try:
        ends = await asyncio.wait_for(consumer.end_offsets(assigned), _LOOK_TIMEOUT)
    except (TimeoutError, KafkaError) as exc:
        return [f"the broker did not tell the ends of {assigned} ({type(exc).__name__})"]
    paused = consumer.paused()
    behind = []
    for tp in assigned:
        try:
            position: int | None = await asyncio.wait_for(consumer.position(tp), _LOOK_TIMEOUT)
        except (TimeoutError, IllegalStateError):
            position = None  # it waits for its committed offset, or was revoked meanwhile
        # Some brokers (Tansu on S3) answer ListOffsets short: the last fetch knew better.
        end = max(ends.get(tp, 0), consumer.highwater(tp) or 0)
        if position is None or position < end:
            state = " (paused)" if tp in paused else ""
            where = "no position" if position is None else f"offset {position}"
            behind.append(f"{tp.topic}[{tp.partition}]{state} is at {where} of {end}")
    return behind


async def _until_done(landing: asyncio.Task[None], name: str) -> None:
    """Await the previous batch's landing and commit, saying where it waits whenever that
    takes longer than ``_STALLED`` seconds: a stage that waits there handles nothing."""
    waited = 0.0
    while True:
        done, _ = await asyncio.wait({landing}, timeout=_STALLED)
        if done:
            landing.result()
            return
        waited += _STALLED
        log.warning(
            "%s: the previous batch has not landed and been committed after %.0fs, and this "
            "stage handles nothing until it has; it waits in %s",
            name,
            waited,
            awaiting(landing),
        )


def awaiting(task: asyncio.Task[Any]) -> str:
    """Where ``task`` waits: its chain of awaits, innermost last."""
    steps: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(steps) < 30:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            steps.append(repr(awaited)[:200])  # a future, or a coroutine that ended
            break
        steps.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return " -> ".join(steps)


def _defer_unready(
    consumer: AIOKafkaConsumer,
    batch: Batch,
    ready: Callable[[TopicPartition], bool],
    name: str,
) -> Batch:
    """``batch`` without the partitions that are not ``ready``; the consumer is sent back
    to their first record, so that they are read again, not skipped."""
    kept: Batch = {}
    for tp, records in batch.items():
        if ready(tp):
            kept[tp] = records
            continue
        log.debug("%s: %s is not ready; reading it again from %d", name, tp, records[0].offset)
        with contextlib.suppress(IllegalStateError):  # revoked: its new owner reads it
            consumer.seek(tp, records[0].offset)
    return kept


async def _commit_after(
    consumer: AIOKafkaConsumer,
    output: Awaitable[Any] | None,
    offsets: dict[TopicPartition, int],
    name: str,
) -> None:
    if output is not None:
        try:
            await output
        except Superseded as exc:
            log.info("%s: not committing a batch: %s", name, exc)
            return
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, KafkaError) as exc:
        # A rebalance took the partitions: the new owner re-reads from the last
        # commit, and idempotent handling makes the repeat harmless.
        log.warning("%s: commit failed (%s); records will be redelivered", name, exc)
